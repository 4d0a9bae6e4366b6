using System.Diagnostics;
using Duck.Inference.Engine;

var m = InferenceModel.Load(args[0], 2);
var c = m.Config;
int R = args.Length > 1 ? int.Parse(args[1]) : 16;
var rng = new Random(1);
var scratch = new ForwardScratch();
var logits = new float[R * c.VocabSize];
int[] tokens = Enumerable.Range(0, R).Select(_ => rng.Next(50000)).ToArray();
var many = Enumerable.Range(0, R).Select(_ => new KvCache(c.NumLayers, c.NumHeads, c.HeadDim, c.ContextLength)).ToArray();
var one = new KvCache(c.NumLayers, c.NumHeads, c.HeadDim, c.ContextLength);
var shared = Enumerable.Repeat(one, R).ToArray();
foreach (var k in many) k.EnsureCapacity(c.ContextLength);
one.EnsureCapacity(c.ContextLength);
var posDecode = Enumerable.Repeat(100, R).ToArray();
var posPrefill = Enumerable.Range(100, R).ToArray();
void Time(string name, Action a)
{
    for (int i = 0; i < 5; i++) a();
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
