// Usage: AttentionProfile [rows=16] [pos=180] [threads=2] [seconds=4] [touch] [noevict]
// The attention of one batched decode pass of the small model (12 layers, 12 heads of 64) over int8 KV caches
// grown as a serving silo grows them, on a pool of threads claiming (row, range of heads) items per layer as the
// engine does; 28 MB are read between passes, as the weights evict the caches. "touch" only reads the same bytes
// in the same order (the memory floor of the layout); "noevict" leaves the caches in L3 (the compute floor).
using System.Diagnostics;
using Duck.Inference.Engine;
using Duck.Inference.Kernels;

int R = args.Length > 0 ? int.Parse(args[0]) : 16, pos = args.Length > 1 ? int.Parse(args[1]) : 180;
int threads = args.Length > 2 ? int.Parse(args[2]) : 2;
double seconds = args.Length > 3 ? double.Parse(args[3]) : 4;
const int L = 12, H = 12, hd = 64, D = H * hd;
var rng = new Random(1);
var caches = new KvCache[R];
var key = new float[hd]; var value = new float[hd];
for (int r = 0; r < R; r++)
{
    caches[r] = new KvCache(L, H, hd, 2048, KvCacheType.Int8);
    caches[r].EnsureCapacity(pos + 1);
    for (int l = 0; l < L; l++) for (int h = 0; h < H; h++) for (int p = 0; p <= pos; p++)
    {
        for (int d = 0; d < hd; d++) { key[d] = (float)rng.NextDouble() - 0.5f; value[d] = (float)rng.NextDouble() - 0.5f; }
        caches[r].Store(l, h, p, key, value);
    }
}
// Something between the passes' attention that evicts the caches as the weights do (27.6 MB of lookup layout).
var weights = new byte[28 << 20];
var q = new float[R * D]; var o = new float[R * D];
for (int i = 0; i < q.Length; i++) q[i] = (float)rng.NextDouble() - 0.5f;
using var pool = new WorkerPool(threads);
bool touch = args.Contains("touch"), evict = !args.Contains("noevict");
long sink = 0;
long bytes = (long)R * L * H * (pos + 1) * (2 * hd + 8);
unsafe void Pass()
{
    for (int l = 0; l < L; l++)
    {
        int layer = l;
        int splits = Math.Min(H, (threads + R - 1) / R); // as InferenceModel.Attention splits a row's heads
        if (splits == 1 && !touch)
        {
            // As InferenceModel.Attention: each thread claims its next row first and asks for its keys meanwhile.
            int next = 0;
            pool.For(threads, _ =>
            {
                int r = Interlocked.Increment(ref next) - 1;
                while (r < R)
                {
                    int n = Interlocked.Increment(ref next) - 1;
                    Attend(layer, r, 0, H, n < R ? n : -1);
                    r = n;
                }
            });
            continue;
        }
        pool.For(R * splits, item =>
        {
            int r = item / splits, k = item % splits, h0 = k * H / splits, heads = (k + 1) * H / splits - h0;
            if (!touch) { Attend(layer, r, h0, heads, -1); return; }
            var c = caches[r];
            int offset = c.Offset(h0, 0);
            fixed (sbyte* keys = c.K8[layer], values = c.V8[layer])
            {
                var acc = System.Runtime.Intrinsics.Vector512<sbyte>.Zero;
                for (int j = 0; j <= pos; j++) for (int i = 0; i < heads; i++) acc += System.Runtime.Intrinsics.Vector512.Load(keys + offset + j * c.Stride + i * hd);
                for (int j = 0; j <= pos; j++) for (int i = 0; i < heads; i++) acc += System.Runtime.Intrinsics.Vector512.Load(values + offset + j * c.Stride + i * hd);
                o[r * D + h0 * hd] = acc[0];
            }
        });
    }
}
unsafe void Attend(int layer, int r, int h0, int heads, int prefetchRow)
{
    var c = caches[r];
    float[] scores = System.Buffers.ArrayPool<float>.Shared.Rent(heads * (pos + 1));
    int offset = c.Offset(h0, 0), si = c.ScaleIndex(h0, 0);
    fixed (float* qp = q, op = o, sc = scores)
    fixed (sbyte* keys = c.K8[layer], values = c.V8[layer], nextKeys = prefetchRow >= 0 ? caches[prefetchRow].K8[layer] : null)
    fixed (float* ks = c.KScale[layer], vs = c.VScale[layer])
    fixed (int* sums = c.KSum[layer])
        AttentionKernels.AttendInt8(qp + r * D + h0 * hd, keys + offset, ks + si, sums + si, values + offset, vs + si, pos + 1, hd, heads, c.Stride, c.Capacity, 0.125f, sc, op + r * D + h0 * hd,
            nextKeys, prefetchRow >= 0 ? (long)(pos + 1) * c.Stride : 0);
    System.Buffers.ArrayPool<float>.Shared.Return(scores);
}
void Evict() { if (!evict) return; long t = 0; for (int i = 0; i < weights.Length; i += 64) t += weights[i]; sink += t; }
for (int i = 0; i < 20; i++) { Evict(); Pass(); }
var times = new List<double>();
var total = Stopwatch.StartNew();
while (total.Elapsed.TotalSeconds < seconds)
{
    Evict();
    long t0 = Stopwatch.GetTimestamp();
    Pass();
    times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
}
times.Sort();
double med = times[times.Count / 2], min = times[0];
Console.WriteLine($"rows {R} pos {pos} threads {threads}: {times.Count} passes, median {med:F3} ms, min {min:F3} ms, {bytes / 1e6:F1} MB -> {bytes / med / 1e6:F1} GB/s");
