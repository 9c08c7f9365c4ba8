using System;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's eval: accuracy of a checkpoint on the test set.
public sealed partial class SampleApp
{
    private int Eval(torch.Device device, string? dataFolder, string checkpointPath, long? limit)
    {
        using var network = LoadNetwork(checkpointPath, device);
        using var data = FashionMnist.Load(dataFolder);
        _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
        var (loss, accuracy, perClass) = Trainer.Evaluate(network, data, limit, device);
        var table = new Table().AddColumns("class", "accuracy");
        for (var c = 0; c < 10; c++) table.AddRow(FashionMnist.Classes[c], P(perClass[c]));
        table.AddRow("[bold]all[/]", $"[bold]{P(accuracy)}[/]");
        _console.Write(table);
        _console.MarkupLine($"Test loss {F(loss)}, accuracy {P(accuracy)} on {Math.Min(data.TestCount, limit ?? long.MaxValue):N0} images ({Markup.Escape(checkpointPath)}).");
        return 0;
    }
}
