using System.Diagnostics;
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Grains;
using Duck.Model;
using static TorchSharp.torch;

set_num_threads(1);
var config = ModelPresets.Get("mini");
using var model = new DuckTransformer(config, 1);
var rng = new Random(1);
long[] Tokens() => Enumerable.Range(0, 8 * 128).Select(_ => (long)rng.Next(config.VocabSize)).ToArray();
var inputs = Tokens();
using (var x = tensor(inputs, new long[] { 8, 128 })) using (var y = tensor(Tokens(), new long[] { 8, 128 }))
    model.Loss(x, y).backward();
int[] rows = inputs.Select(t => (int)t).Distinct().Order().ToArray();
var names = ModelExchange.TernaryNames(model);
var residuals = new Dictionary<string, float[]>();
var sr = new SplitMix64(1);
byte[] packet = [], weights = [];
var embedding = model.named_parameters().First(p => p.name == TensorNames.Embedding).parameter.data<float>().ToArray();
byte[] rowBytes = ModelExchange.EmbeddingRows(embedding, config, rows);
using var replica = new DuckTransformer(config, 2);
replica.SetPrequantizedWeights(true);
var sums = model.named_parameters().ToDictionary(p => p.name, p => new float[p.parameter.numel()]);
void Time(string name, Action a)
{
    a();
    double best = double.MaxValue;
    for (int i = 0; i < 4; i++) { var sw = Stopwatch.StartNew(); a(); best = Math.Min(best, sw.Elapsed.TotalMilliseconds); }
    Console.WriteLine($"{name,-28} {best,8:F1} ms");
}
foreach (var c in new[] { GradientCompression.Ternary, GradientCompression.TernGrad })
    Time($"encode {c}", () => packet = ModelExchange.EncodeGradients(model, rows, c, residuals, ref sr));
Time("pack weights", () => weights = ModelExchange.PackWeights(model, names));
Time("embedding copy", () => embedding = model.named_parameters().First(p => p.name == TensorNames.Embedding).parameter.data<float>().ToArray());
Time("load replica", () => ModelExchange.LoadReplica(replica, weights, rows, rowBytes));
Time("decode (accumulate) x1", () => { foreach (var s in sums.Values) Array.Clear(s); ModelExchange.Accumulate(packet, sums); });
Console.WriteLine($"packet {packet.Length:N0} B, weights {weights.Length:N0} B");
