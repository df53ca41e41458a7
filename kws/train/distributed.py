"""Training on several devices and workers with tf.distribute: the strategy of --strategy, the
agreement of every worker on clock readings, each worker's slices of the global batches,
batch normalisation over the global batch, and the scope multi-worker fit runs in."""

import keras
import tensorflow as tf


def make_strategy(args):
    """The tf.distribute strategy of --strategy; must run before TensorFlow starts a device."""
    if args.strategy == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if args.strategy == "mirrored":
        if args.cpu_devices:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices)
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(devices,
                                                  cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cluster_agreement(strategy, multi_worker):
    """f(values) -> the largest of each value over all workers (the values as they are with
    one worker): budgets and schedules that read clocks must decide the same on every worker.
    Every worker has to call it at the same points, as the callbacks do."""
    if not multi_worker:
        return lambda values: list(values)

    @tf.function
    def largest(values):
        return strategy.run(lambda: tf.reduce_max(
            tf.distribute.get_replica_context().all_gather(values[None], axis=0), axis=0))

    def agree(values):
        reduced = largest(tf.constant(list(values), tf.float64))
        return [float(v) for v in strategy.experimental_local_results(reduced)[0].numpy()]

    return agree


def distributed_training_data(strategy, make_dataset):
    """strategy.distribute_datasets_from_function over make_dataset(replicas=(first, count,
    total)): each worker builds the slices of every global batch that its local replicas take,
    so each example is seen once per epoch across workers (no auto-sharding on top)."""

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        ds = make_dataset((first, local, context.num_replicas_in_sync))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


def synchronise_batch_norm(net):
    """Batch normalisation over the global batch, not each replica's share: N replicas then
    compute what one device does with the same --batch_size (one all-reduce per layer a step)."""
    for layer in net._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def multi_worker_fit_scope(net, strategy):
    """Work around two Keras 3.15 faults with MultiWorkerMirroredStrategy; returns the scope
    to call fit in. (1) fit first builds a model that has a strategy from a batch reduced
    across the replicas, which fails for this strategy's batches: the model is built already,
    so Keras is told of no strategy and fit runs in the strategy's scope, where Keras finds it.
    (2) Keras reduces each step's metrics across workers along an axis 0 that scalars lack:
    train_step gives them one (a mean over it is the same mean)."""
    net._distribute_strategy = None
    train_step = net.train_step

    def step_with_axis(data):
        return {name: tf.reshape(value, [1]) for name, value in train_step(data).items()}

    net.train_step = step_with_axis
    return strategy.scope()
