"""Model builders from hyperparameters: a dense net, a small CNN and a small ResNet.

Every model takes raw images (as the dataset gives them) and returns class probabilities,
so the exported SavedModel needs no preprocessing on the serving side.
"""
import itertools

import tensorflow as tf
import tf_keras as keras

from trainer.config import Config


class Dropout(keras.layers.Layer):
    """keras Dropout, with its random state in a tf.random.Generator the layer tracks.

    keras' own Dropout keeps its state out of checkpoints (even with
    enable_tf_random_generator), so a resumed run would draw other masks than an
    uninterrupted one; this one's state is checkpointed with the model.
    """

    def __init__(self, rate, seed, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.generator = tf.random.Generator.from_seed(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        return tf.nn.experimental.general_dropout(inputs, rate=self.rate, uniform_sampler=self.generator.uniform)


def _normalised_input(shape, dtype, mean, std):
    inputs = keras.Input(shape=shape, dtype=dtype, name="image")
    # Rescaling casts the integer pixels to the compute dtype itself.
    return inputs, keras.layers.Rescaling(scale=1.0 / std, offset=-mean / std, name="normalise")(inputs)


def _mlp(x, c: Config, seeds):
    x = keras.layers.Flatten()(x)
    for _ in range(c.num_layers):
        x = keras.layers.Dense(c.units, activation="relu")(x)
        x = Dropout(c.dropout, next(seeds))(x)
    return x


def _cnn(x, c: Config, seeds):
    for i in range(c.num_layers):
        x = keras.layers.Conv2D(c.filters * 2**i, 3, padding="same", activation="relu")(x)
        if min(x.shape[1], x.shape[2]) >= 4:  # keep at least 2x2 for small images
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = Dropout(c.dropout, next(seeds))(x)
    x = keras.layers.Dense(c.units, activation="relu")(x)
    return Dropout(c.dropout, next(seeds))(x)


def _residual_block(x, filters):
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization(momentum=0.9)(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization(momentum=0.9)(y)
    return keras.layers.ReLU()(keras.layers.Add()([x, y]))


def _resnet(x, c: Config, seeds):
    x = keras.layers.Conv2D(c.filters, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    for _ in range(c.num_layers):
        x = _residual_block(x, c.filters)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = Dropout(c.dropout, next(seeds))(x)
    x = keras.layers.Dense(c.units, activation="relu")(x)
    return Dropout(c.dropout, next(seeds))(x)


_BODIES = {"mlp": _mlp, "cnn": _cnn, "resnet": _resnet}


def build(c: Config, image_shape, image_dtype, num_classes, pixel_mean, pixel_std) -> keras.Model:
    """Builds the model named by --model; call inside the strategy scope."""
    inputs, x = _normalised_input(image_shape, image_dtype, pixel_mean, pixel_std)
    seeds = itertools.count(c.seed * 1000)  # one seed per Dropout layer
    x = _BODIES[c.model](x, c, seeds)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    # float32 output even under mixed precision: softmax in float16 loses the small classes.
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=c.model)
