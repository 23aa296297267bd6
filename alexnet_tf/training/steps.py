"""The compiled steps of the training loop: one training step, one validation step.

Each step takes one batch of this worker's share of the global batch; every replica
takes its slice (`strategy_lib.replica_slice`). Training: softmax cross-entropy of the
float32 logits averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), gradients
all-reduced by the optimizer. Validation: summed loss and top-1/top-5 hits, so short
batches and several workers add up exactly.
"""

from typing import Callable, Optional

import keras
import tensorflow as tf

from alexnet_tf.distributed import cluster
from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.evaluation import metrics


def make_train_step(model, optimizer, strategy, config, num_local_replicas: int,
                    augment: Optional[Callable] = None):
    """A tf.function(iterator) -> loss running one global batch on every replica.

    `augment` (--augment_on=device) maps each replica's slice of the batch, uint8 crops
    and their draws, to float images on the replica's device before the forward pass.
    """
    scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def forward_backward(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)  # (b, classes)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.cast(labels, tf.int32), logits=logits)  # (b,)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
            scaled = optimizer.scale_loss(loss) if scale_loss else loss
        return loss, tape.gradient(scaled, model.trainable_variables)

    if config.jit_compile:
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def replica_step(images, labels):
        images, labels = strategy_lib.replica_slice((images, labels), num_local_replicas)
        if augment is not None:
            images = augment(images)
        loss, gradients = forward_backward(images, labels)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        images, labels = next(iterator)
        losses = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def make_eval_step(model, strategy, num_local_replicas: int):
    """A tf.function(images, labels) -> (loss sum, top-1 hits, top-5 hits, count)."""

    def replica_step(images, labels):
        images, labels = strategy_lib.replica_slice((images, labels), num_local_replicas)
        logits = tf.cast(model(images, training=False), tf.float32)
        valid = labels >= 0  # Padding rows carry label -1.
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.maximum(labels, 0), logits=logits)
        loss_sum = tf.reduce_sum(tf.where(valid, per_example, 0.0))
        top1, top5 = metrics.count_correct(logits, labels, k=5)
        return loss_sum, top1, top5, tf.reduce_sum(tf.cast(valid, tf.int32))

    @tf.function(reduce_retracing=True)  # The last batch is usually shorter.
    def eval_step(images, labels):
        labels = tf.cast(labels, tf.int32)
        # Pad the (possibly short) last batch so it splits evenly across replicas.
        size = tf.shape(labels)[0]
        padded = (size + num_local_replicas - 1) // num_local_replicas * num_local_replicas
        images = tf.pad(images, [[0, padded - size], [0, 0], [0, 0], [0, 0]])
        labels = tf.pad(labels, [[0, padded - size]], constant_values=-1)
        results = strategy.run(replica_step, args=(images, labels))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return eval_step


def evaluate(eval_step, dataset: tf.data.Dataset, max_batches: int = 0,
             strategy=None) -> dict:
    """Top-1/top-5 error and mean loss over `dataset` (the first `max_batches` if > 0).

    With a multi-worker `strategy` each worker passes its own shard; the counts are
    summed over workers, and workers run equally many steps (cluster.lockstep_batches).
    """
    counts = metrics.Counts()
    loss_sum = 0.0
    if max_batches:
        dataset = dataset.take(max_batches)
    if strategy is not None:
        # A worker whose shard is done feeds one row labelled -1 (ignored) until all are.
        images_spec, labels_spec = dataset.element_spec
        padding = (tf.zeros([1, *images_spec.shape[1:]], images_spec.dtype),
                   tf.constant([-1], labels_spec.dtype))
        dataset = cluster.lockstep_batches(dataset, strategy, padding)
    for images, labels in dataset:
        loss, top1, top5, count = eval_step(images, labels)
        counts.add(int(count), int(top1), int(top5))
        loss_sum += float(loss)
    if counts.num_examples == 0:
        raise ValueError("the validation dataset is empty")
    return dict(top1_error=counts.top1_error, top5_error=counts.top5_error,
                loss=loss_sum / counts.num_examples, num_examples=counts.num_examples)
