// Draws loss curves as a self-contained SVG (no plotting library): train and validation loss of one or more
// runs against steps, log-free linear axes with round ticks, and a legend. Not an interactive chart.
using System.Globalization;
using System.Text;

namespace Duck.Coordinator;

public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points, bool Dashed = false);

public static class LossChart
{
    static readonly string[] Palette = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf" };

    /// <summary>An SVG document with every series on one pair of axes.</summary>
    public static string Render(string title, IReadOnlyList<ChartSeries> series, int width = 900, int height = 520)
    {
        var all = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.Y)).ToList();
        if (all.Count == 0) throw new ArgumentException("nothing to plot: no finite points");
        const int left = 70, right = 200, top = 40, bottom = 50;
        double xMin = 0, xMax = Math.Max(1, all.Max(p => p.X));
        double yMin = Math.Floor(all.Min(p => p.Y) * 2) / 2, yMax = Math.Ceiling(all.Max(p => p.Y) * 2) / 2;
        if (yMax <= yMin) yMax = yMin + 1;
        double plotW = width - left - right, plotH = height - top - bottom;
        string X(double x) => F(left + (x - xMin) / (xMax - xMin) * plotW);
        string Y(double y) => F(top + (1 - (y - yMin) / (yMax - yMin)) * plotH);

        var svg = new StringBuilder();
        svg.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append($"<text x=\"{left}\" y=\"24\" font-size=\"16\">{Escape(title)}</text>\n");
        foreach (double t in Ticks(yMin, yMax))
            svg.Append($"<line x1=\"{left}\" x2=\"{F(left + plotW)}\" y1=\"{Y(t)}\" y2=\"{Y(t)}\" stroke=\"#ddd\"/>" +
                       $"<text x=\"{left - 8}\" y=\"{Y(t)}\" text-anchor=\"end\" dominant-baseline=\"middle\">{F(t)}</text>\n");
        foreach (double t in Ticks(xMin, xMax))
            svg.Append($"<line x1=\"{X(t)}\" x2=\"{X(t)}\" y1=\"{top}\" y2=\"{F(top + plotH)}\" stroke=\"#eee\"/>" +
                       $"<text x=\"{X(t)}\" y=\"{F(top + plotH + 18)}\" text-anchor=\"middle\">{F(t)}</text>\n");
        svg.Append($"<rect x=\"{left}\" y=\"{top}\" width=\"{F(plotW)}\" height=\"{F(plotH)}\" fill=\"none\" stroke=\"#333\"/>\n");
        svg.Append($"<text x=\"{F(left + plotW / 2)}\" y=\"{height - 10}\" text-anchor=\"middle\">step</text>\n");
        svg.Append($"<text transform=\"translate(18 {F(top + plotH / 2)}) rotate(-90)\" text-anchor=\"middle\">loss (nats/token)</text>\n");
        for (int i = 0; i < series.Count; i++)
        {
            var s = series[i];
            string color = Palette[i / 2 % Palette.Length];
            var pts = s.Points.Where(p => double.IsFinite(p.Y)).Select(p => $"{X(p.X)},{Y(p.Y)}");
            string dash = s.Dashed ? " stroke-dasharray=\"6 4\"" : "";
            svg.Append($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{(s.Dashed ? 2.2 : 1.2)}\"{dash} points=\"{string.Join(' ', pts)}\"/>\n");
            double ly = top + 16 + i * 20;
            svg.Append($"<line x1=\"{F(left + plotW + 12)}\" x2=\"{F(left + plotW + 40)}\" y1=\"{F(ly)}\" y2=\"{F(ly)}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>" +
                       $"<text x=\"{F(left + plotW + 46)}\" y=\"{F(ly)}\" dominant-baseline=\"middle\">{Escape(s.Name)}</text>\n");
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    static IEnumerable<double> Ticks(double min, double max)
    {
        double raw = (max - min) / 6, mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 5, 10 }.Select(m => m * mag).First(s => s >= raw);
        for (double t = Math.Ceiling(min / step) * step; t <= max + 1e-9; t += step) yield return t;
    }

    static string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
    static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
