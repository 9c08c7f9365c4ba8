using System.Collections.Generic;
using System.Linq;

namespace ResNetGen.Sample;

/// <summary>The training curves as a PNG: loss and accuracy per epoch, train and test.</summary>
public static class Curves
{
    public static void Save(IReadOnlyList<EpochResult> epochs, string path)
    {
        var plot = new ScottPlot.Plot();
        var x = epochs.Select(e => (double)e.Epoch).ToArray();
        var trainAcc = plot.Add.Scatter(x, epochs.Select(e => 100 * e.TrainAccuracy).ToArray());
        trainAcc.LegendText = "train accuracy (%)";
        var testAcc = plot.Add.Scatter(x, epochs.Select(e => 100 * e.TestAccuracy).ToArray());
        testAcc.LegendText = "test accuracy (%)";
        var trainLoss = plot.Add.Scatter(x, epochs.Select(e => e.TrainLoss).ToArray());
        trainLoss.LegendText = "train loss";
        trainLoss.Axes.YAxis = plot.Axes.Right;
        var testLoss = plot.Add.Scatter(x, epochs.Select(e => e.TestLoss).ToArray());
        testLoss.LegendText = "test loss";
        testLoss.Axes.YAxis = plot.Axes.Right;
        plot.Title("ResNet-20 on Fashion-MNIST");
        plot.XLabel("epoch");
        plot.YLabel("accuracy (%)");
        plot.Axes.Right.Label.Text = "cross-entropy loss";
        plot.ShowLegend();
        plot.SavePng(path, 900, 500);
    }
}
