// Lab: times the parts of one training step so optimization starts from a profile. Usage: PRESET BATCH SEQ [fp32]
using System.Diagnostics;
using Duck.Core.Model;
using Duck.Model;
using static TorchSharp.torch;
if (Environment.GetEnvironmentVariable("THREADS") is { } th) set_num_threads(int.Parse(th));
if (args[0] == "ops")
{
    var L = randn(2048, 50257);
    double T1(Action a) { a(); var sw = Stopwatch.StartNew(); a(); return sw.Elapsed.TotalMilliseconds; }
    Console.WriteLine($"exp: {T1(() => L.exp().Dispose()):F0} ms");
    Console.WriteLine($"add: {T1(() => (L + 1).Dispose()):F0} ms");
    Console.WriteLine($"amax rows: {T1(() => L.amax(new long[] { 1 }).Dispose()):F0} ms");
    Console.WriteLine($"sum rows: {T1(() => L.sum(1).Dispose()):F0} ms");
    Console.WriteLine($"log_softmax: {T1(() => L.log_softmax(1).Dispose()):F0} ms");
    Console.WriteLine($"softmax: {T1(() => L.softmax(1).Dispose()):F0} ms");
    Console.WriteLine($"ce: {T1(() => nn.functional.cross_entropy(L, randint(0, 50257, new long[] { 2048 })).Dispose()):F0} ms");
    return;
}
if (args[0] == "bitlinear")
{
    double T2(Action a) { a(); var sw = Stopwatch.StartNew(); for (int i = 0; i < 3; i++) a(); return sw.Elapsed.TotalMilliseconds / 3; }
    foreach (bool tern in new[] { false, true })
    {
        var lin = new BitLinear(768, 2048, tern, 0.02f);
        var xin = randn(new long[] { 2048, 768 }, requires_grad: true);
        Console.WriteLine($"{(tern ? "ternary" : "fp32")} fwd {T2(() => { using var s = NewDisposeScope(); lin.forward(xin); }):F1} ms, fwd+bwd {T2(() => { using var s = NewDisposeScope(); lin.forward(xin).sum().backward(); }):F1} ms");
    }
    var xx = randn(2048, 768);
    Console.WriteLine($"act quant {T2(() => { using var s = NewDisposeScope(); BitQuant.Int8Activations(xx); }):F1} ms");
    var ww = randn(2048, 768);
    Console.WriteLine($"weight quant {T2(() => { using var s = NewDisposeScope(); BitQuant.TernaryWeights(ww); }):F1} ms");
    return;
}
string preset = args[0]; int B = int.Parse(args[1]), T = int.Parse(args[2]); bool fp32 = args.Length > 3 && args[3] == "fp32"; // "prequant": ternary without the weight quantizer and its STE
var cfg = ModelPresets.Get(preset) with { Ternary = !fp32 };
using var model = new DuckTransformer(cfg);
if (args.Length > 3 && args[3] == "prequant") model.SetPrequantizedWeights(true);
var x = randint(0, cfg.VocabSize, new long[] { B, T }); var y = randint(0, cfg.VocabSize, new long[] { B, T });
var opt = new AdamW(model.named_parameters());
double Time(Action a, int n = 3) { a(); var sw = Stopwatch.StartNew(); for (int i = 0; i < n; i++) a(); return sw.Elapsed.TotalMilliseconds / n; }
Console.WriteLine($"fwd only (no_grad): {Time(() => { using var s = NewDisposeScope(); using var g = no_grad(); model.Loss(x, y); }):F0} ms");
Console.WriteLine($"fwd+bwd: {Time(() => { using var s = NewDisposeScope(); model.Loss(x, y).backward(); }):F0} ms");
Console.WriteLine($"opt step: {Time(() => opt.Step(1e-3, 0.1)):F0} ms");
Console.WriteLine($"clip: {Time(() => nn.utils.clip_grad_norm_(model.parameters(), 1.0)):F0} ms");
Console.WriteLine($"weight quant all: {Time(() => { using var s = NewDisposeScope(); foreach (var l in model.BitLinears) BitQuant.TernaryWeights(l.Weight); }):F0} ms");
var h = randn(B, T, cfg.ModelDim);
var W = randn(cfg.VocabSize, cfg.ModelDim);
Console.WriteLine($"head matmul fwd: {Time(() => { using var s = NewDisposeScope(); nn.functional.linear(h, W); }):F0} ms");
var logits = randn(B * T, cfg.VocabSize, requires_grad: true); var yy = y.view(-1);
Console.WriteLine($"xent fwd+bwd: {Time(() => { using var s = NewDisposeScope(); nn.functional.cross_entropy(logits, yy).backward(); }):F0} ms");
