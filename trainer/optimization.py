"""Optimizer and learning-rate schedule from hyperparameters."""
import math

import tensorflow as tf
import tf_keras as keras

from trainer.config import Config


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to the peak rate, then constant, cosine or exponential decay."""

    def __init__(self, peak, kind, warmup_steps, total_steps, steps_per_epoch):
        self.peak, self.kind = peak, kind
        self.warmup_steps, self.total_steps, self.steps_per_epoch = warmup_steps, total_steps, steps_per_epoch

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(self.warmup_steps, tf.float32)
        after = tf.maximum(step - warm, 0.0)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        if self.kind == "cosine":
            decayed = self.peak * 0.5 * (1.0 + tf.cos(math.pi * tf.minimum(after / decay_steps, 1.0)))
        elif self.kind == "exponential":
            # 0.9 per epoch: about a tenth of the peak after 22 epochs.
            decayed = self.peak * tf.pow(0.9, after / float(self.steps_per_epoch))
        else:
            decayed = tf.constant(self.peak, tf.float32)
        if self.warmup_steps == 0:
            return decayed
        return tf.where(step < warm, self.peak * (step + 1.0) / warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "kind": self.kind, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch}


def build_optimizer(c: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = WarmupSchedule(c.learning_rate, c.lr_schedule, c.warmup_epochs * steps_per_epoch,
                              c.epochs * steps_per_epoch, steps_per_epoch)
    decay = c.weight_decay or None
    if c.optimizer == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=decay)
    if c.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=c.weight_decay)
    if c.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=c.momentum, weight_decay=decay)
    return keras.optimizers.RMSprop(schedule, momentum=c.momentum, weight_decay=decay)
