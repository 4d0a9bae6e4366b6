// Test classes run one after another: each starts real silo processes (a three-silo cluster with a training job,
// Azurite), and on a 2-core machine running them together would also starve the timing-sensitive cluster tests of
// the other test projects that scripts/test.sh runs at the same time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
