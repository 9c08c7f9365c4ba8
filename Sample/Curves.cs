using System;
using System.Collections.Generic;
using System.Linq;
using ScottPlot;

namespace ResNetGen.Sample;

/// <summary>
/// The training curves as a PNG: two panels side by side, loss on the left and accuracy (%) on the right, train and
/// evaluation, whole-number epoch ticks, legends outside the data. A curve with no finite value is named in its panel's
/// title instead of vanishing; non-finite points of a partial curve are named too.
/// </summary>
public static class Curves
{
    public static void Save(IReadOnlyList<EpochResult> epochs, string path, string title, string evaluatedOn = "test") =>
        Build(epochs, title, evaluatedOn).SavePng(path, Width, Height);

    public const int Width = 1200, Height = 450;

    /// <summary>The two panels, not yet rendered: plot 0 is the loss, plot 1 the accuracy.</summary>
    public static Multiplot Build(IReadOnlyList<EpochResult> epochs, string title, string evaluatedOn = "test")
    {
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        var x = epochs.Select(e => (double)e.Epoch).ToArray();
        Panel(multiplot.GetPlot(0), $"{title}: loss", "cross-entropy loss", x,
            ("train loss", epochs.Select(e => e.TrainLoss).ToArray(), Colors.C0),
            ($"{evaluatedOn} loss", epochs.Select(e => e.TestLoss).ToArray(), Colors.C1));
        Panel(multiplot.GetPlot(1), $"{title}: accuracy", "accuracy (%)", x,
            ("train accuracy", epochs.Select(e => 100 * e.TrainAccuracy).ToArray(), Colors.C0),
            ($"{evaluatedOn} accuracy", epochs.Select(e => 100 * e.TestAccuracy).ToArray(), Colors.C1));
        var accuracy = multiplot.GetPlot(1);
        accuracy.Axes.SetLimitsY(0, 100);
        return multiplot;
    }

    private static void Panel(Plot plot, string title, string yLabel, double[] x, params (string Name, double[] Values, Color Color)[] series)
    {
        var missing = new List<string>();
        double top = 0;
        foreach (var (name, values, color) in series)
        {
            var finite = Enumerable.Range(0, x.Length).Where(i => double.IsFinite(values[i])).ToArray();
            if (finite.Length == 0)
            {
                missing.Add($"{name}: no finite value (diverged?)");
                continue;
            }
            if (finite.Length < x.Length)
                missing.Add($"{name}: not a number at epoch {string.Join(", ", Enumerable.Range(0, x.Length).Except(finite).Select(i => x[i]))}");
            var scatter = plot.Add.Scatter(finite.Select(i => x[i]).ToArray(), finite.Select(i => values[i]).ToArray());
            scatter.LegendText = name;
            scatter.Color = color;
            scatter.LineWidth = 2;
            scatter.MarkerSize = 8;
            top = Math.Max(top, finite.Max(i => values[i]));
        }
        plot.Title(missing.Count == 0 ? title : title + "\n" + string.Join("; ", missing));
        plot.XLabel("epoch");
        plot.YLabel(yLabel);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.Bottom.MinorTickStyle.Length = 0; // no unlabelled marks between epochs
        plot.Axes.SetLimitsX(0.5, x.DefaultIfEmpty(1).Max() + 0.5);
        plot.Axes.SetLimitsY(0, top > 0 ? top * 1.1 : 1);
        plot.ShowLegend(Edge.Bottom);
    }
}
