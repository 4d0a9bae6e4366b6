// Test classes run one after another: each starts its own cluster, libtorch's thread count is process-wide, and
// the equivalence test needs the same thread count throughout to compare losses bit for bit.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
