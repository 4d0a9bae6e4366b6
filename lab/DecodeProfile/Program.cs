using System.Diagnostics;
using Duck.Inference.Engine;

int threadsIndex = Array.IndexOf(args, "threads");
var m = InferenceModel.Load(args[0], threadsIndex >= 0 ? int.Parse(args[threadsIndex + 1]) : 2);
// As a serving silo runs it (TernaryMatMul.BestBatched); "multiply" keeps the single-stream default path.
if (!args.Contains("multiply")) { m.KernelPath = Duck.Inference.Kernels.TernaryMatMul.BestBatched; m.PrepareLookup(); }
var c = m.Config;
int R = args.Length > 1 ? int.Parse(args[1]) : 16;
// Optional: "int8" for the chat servers' cache type; "pos P" decodes at position P (default 100); "loop SECONDS" runs
// only the batched decode (after 1.5 s of warm-up), for perf or for A/B runs of two builds; "mix P" adds a prompt
// chunk of P rows to that pass, as a serving pass carries; "sample" times the sampler on the pass's logits;
// "multiply" runs the multiply kernels (TernaryMatMul.Best) instead of the serving path; "threads N" sizes the pool.
var kvType = args.Contains("int8") ? KvCacheType.Int8 : KvCacheType.Bf16;
int loopIndex = Array.IndexOf(args, "loop");
var rng = new Random(1);
var scratch = new ForwardScratch();
var logits = new float[R * c.VocabSize];
int[] tokens = Enumerable.Range(0, R).Select(_ => rng.Next(50000)).ToArray();
var many = Enumerable.Range(0, R).Select(_ => new KvCache(c.NumLayers, c.NumHeads, c.HeadDim, c.ContextLength, kvType)).ToArray();
var one = new KvCache(c.NumLayers, c.NumHeads, c.HeadDim, c.ContextLength, kvType);
var shared = Enumerable.Repeat(one, R).ToArray();
foreach (var k in many) k.EnsureCapacity(c.ContextLength);
// Every cached position written (not the zero pages of a fresh array, which all read one cached page): the decode
// rows read their caches from memory as a serving silo's do.
var kv = Enumerable.Range(0, c.HeadDim).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
foreach (var k in many.Distinct())
    for (int l = 0; l < c.NumLayers; l++) for (int h = 0; h < c.NumHeads; h++) for (int p = 0; p < Math.Min(c.ContextLength, 512); p++) k.Store(l, h, p, kv, kv);
one.EnsureCapacity(c.ContextLength);
int posIndex = Array.IndexOf(args, "pos"), pos = posIndex >= 0 ? int.Parse(args[posIndex + 1]) : 100;
var posDecode = Enumerable.Repeat(pos, R).ToArray();
var posPrefill = Enumerable.Range(Math.Min(pos, c.ContextLength - R), R).ToArray();
// "mix P": a serving pass, R decode rows plus one prompt chunk of P rows of another cache (logits only where sampled).
int mixIndex = Array.IndexOf(args, "mix"), P = mixIndex >= 0 ? int.Parse(args[mixIndex + 1]) : 0;
if (P > 0)
{
    var extra = new KvCache(c.NumLayers, c.NumHeads, c.HeadDim, c.ContextLength, kvType);
    extra.EnsureCapacity(c.ContextLength);
    tokens = [.. tokens, .. Enumerable.Range(0, P).Select(_ => rng.Next(50000))];
    many = [.. many, .. Enumerable.Repeat(extra, P)];
    posDecode = [.. posDecode, .. Enumerable.Range(pos - P, P)];
    logits = new float[(R + 1) * c.VocabSize];
}
int[] logitRows = [.. Enumerable.Range(0, R), .. (P > 0 ? new[] { R + P - 1 } : [])];
if (args.Contains("sample"))
{
    m.Forward(tokens, many, posDecode, logitRows, logits, scratch);
    var sampler = new Sampler(new SamplingOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f, RepetitionPenalty = 1.1f, Seed = 1 });
    var history = Enumerable.Range(0, 150).Select(_ => rng.Next(50000)).ToList();
    int V = c.VocabSize;
    for (int rep = 0; rep < 3; rep++)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 2000; i++) sampler.Sample(logits.AsSpan((i % R) * V, V), history);
        Console.WriteLine($"sample: {sw.Elapsed.TotalMicroseconds / 2000:F1} us");
    }
    return;
}
if (loopIndex >= 0)
{
    for (var warm = Stopwatch.StartNew(); warm.Elapsed.TotalSeconds < 1.5;) m.Forward(tokens, many, posDecode, logitRows, logits, scratch);
    var until = Stopwatch.StartNew();
    long passes = 0;
    while (until.Elapsed.TotalSeconds < double.Parse(args[loopIndex + 1])) { m.Forward(tokens, many, posDecode, logitRows, logits, scratch); passes++; }
    Console.WriteLine($"{passes} passes, {until.Elapsed.TotalMilliseconds / passes:F2} ms/pass");
    return;
}
void Time(string name, Action a)
{
    for (var warm = Stopwatch.StartNew(); warm.Elapsed.TotalSeconds < 1.5;) a(); // past the JIT's tiering
    double best = double.MaxValue;
    for (int rep = 0; rep < 5; rep++)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 20; i++) a();
        best = Math.Min(best, sw.Elapsed.TotalMilliseconds / 20);
    }
    Console.WriteLine($"{name,-40} {best,8:F2} ms/pass  {best / R,6:F3} ms/token");
}
Time("decode R caches, all logits", () => m.Forward(tokens, many, posDecode, true, logits, scratch));
Time("decode R caches, last logits", () => m.Forward(tokens, many, posDecode, false, logits, scratch));
Time("prefill 1 cache, all logits", () => m.Forward(tokens, shared, posPrefill, true, logits, scratch));
Time("prefill 1 cache, last logits", () => m.Forward(tokens, shared, posPrefill, false, logits, scratch));
