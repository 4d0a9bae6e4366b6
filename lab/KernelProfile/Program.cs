using System.Diagnostics;
using Duck.Inference.Kernels;

var rng = new Random(1);
int[] tokenCounts = args.Length > 0 ? args[0].Split(',').Select(int.Parse).ToArray() : [1, 2, 4, 8, 16, 32, 64];
var paths = args.Length > 1 ? args[1].Split(',').Select(Enum.Parse<KernelPath>).ToArray() : [KernelPath.AvxVnni, KernelPath.Avx512];
foreach (var (rows, cols) in new[] { (768, 768), (2048, 768), (768, 2048), (50257, 768) })
{
    using var w = new PackedTernary(rows, cols, 0.1f);
    var t = new sbyte[w.PaddedCols];
    for (int r = 0; r < rows; r++) { for (int j = 0; j < cols; j++) t[j] = (sbyte)rng.Next(-1, 2); w.SetRow(r, t); }
    foreach (int n in tokenCounts)
    {
        var x = new float[n * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextDouble() - 0.5f;
        var qa = new QuantizedActivations();
        qa.Quantize(x, n, cols);
        var y = new float[n * rows];
        var line = $"{rows,6}x{cols,-5} tokens {n,3}:";
        foreach (var p in paths)
        {
            TernaryMatMul.Multiply(w, qa, y, 0, rows, p);
            double best = double.MaxValue;
            for (int rep = 0; rep < 5; rep++)
            {
                var proc = Process.GetCurrentProcess();
                var cpu0 = proc.TotalProcessorTime;
                int iters = Math.Max(1, (int)(2e10 / ((double)rows * cols * n)));
                for (int it = 0; it < iters; it++) TernaryMatMul.Multiply(w, qa, y, 0, rows, p);
                proc.Refresh();
                best = Math.Min(best, (proc.TotalProcessorTime - cpu0).TotalSeconds / iters);
            }
            line += $"  {p} {rows * (double)cols * n / best / 1e9,6:F1} GMAC/s";
        }
        Console.WriteLine(line);
    }
}
