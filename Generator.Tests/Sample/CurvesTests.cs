using System;
using System.IO;
using System.Linq;
using ResNetGen.Sample;
using ScottPlot;
using Xunit;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>The curves PNG as a reader meets it: two panels, whole-number epoch ticks, accuracy on 0–100, missing curves named.</summary>
public sealed class CurvesTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-curves-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private static EpochResult Epoch(int epoch, double trainLoss, double trainAccuracy, double testLoss, double testAccuracy) =>
        new(epoch, trainLoss, trainAccuracy, testLoss, testAccuracy, Seconds: 1, ImagesPerSecond: 1);

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(30)]
    public void Epoch_ticks_are_whole_numbers_and_the_panels_are_loss_then_accuracy(int epochs)
    {
        var results = Enumerable.Range(1, epochs).Select(e => Epoch(e, 2.0 / e, 0.5 + 0.01 * e, 1.8 / e, 0.45 + 0.01 * e)).ToArray();
        var multiplot = Curves.Build(results, "net");
        var path = Path.Combine(_folder, "curves.png");
        multiplot.SavePng(path, Curves.Width, Curves.Height);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(path).Take(4));

        var (loss, accuracy) = (multiplot.GetPlot(0), multiplot.GetPlot(1));
        Assert.Equal("net: loss", loss.Axes.Title.Label.Text);
        Assert.Equal("net: accuracy", accuracy.Axes.Title.Label.Text);
        foreach (var plot in new[] { loss, accuracy })
        {
            var ticks = plot.Axes.Bottom.TickGenerator.Ticks;
            var major = ticks.Where(t => t.IsMajor).ToArray();
            Assert.NotEmpty(major);
            Assert.All(major, t => Assert.True(t.Position == Math.Round(t.Position) && t.Position >= 1 && t.Position <= epochs,
                $"tick at {t.Position} labelled '{t.Label}'"));
            Assert.Equal(0, plot.Axes.Bottom.MinorTickStyle.Length);
            var limits = plot.Axes.GetLimits();
            Assert.Equal((0.5, epochs + 0.5), (limits.Left, limits.Right));
        }
        if (epochs <= 10) // a short run gets a labelled tick at every epoch; a long one every few
            Assert.Equal(Enumerable.Range(1, epochs).Select(e => (double)e), loss.Axes.Bottom.TickGenerator.Ticks.Where(t => t.IsMajor).Select(t => t.Position).Order());
        var accuracyLimits = accuracy.Axes.GetLimits();
        Assert.Equal((0.0, 100.0), (accuracyLimits.Bottom, accuracyLimits.Top));
        var lossLimits = loss.Axes.GetLimits();
        Assert.Equal(0, lossLimits.Bottom);
        Assert.True(lossLimits.Top >= 2.0, $"the loss axis ends at {lossLimits.Top}, below the first train loss 2.0");
    }

    [Fact]
    public void A_curve_without_a_finite_value_and_a_partial_one_are_named_in_their_panel()
    {
        var results = new[]
        {
            Epoch(1, 1.2, 0.6, double.NaN, 0.5),
            Epoch(2, 0.9, double.NaN, double.NaN, 0.7),
            Epoch(3, 0.8, 0.8, double.PositiveInfinity, 0.75),
        };
        var multiplot = Curves.Build(results, "net", evaluatedOn: "validation");
        multiplot.SavePng(Path.Combine(_folder, "curves.png"), Curves.Width, Curves.Height);

        Assert.Equal("net: loss\nvalidation loss: no finite value (diverged?)", multiplot.GetPlot(0).Axes.Title.Label.Text);
        Assert.Equal("net: accuracy\ntrain accuracy: not a number at epoch 2", multiplot.GetPlot(1).Axes.Title.Label.Text);
    }
}
