using System;
using System.IO;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's summary and the demo.
public sealed partial class SampleApp
{
    private int Summary()
    {
        _console.MarkupLine($"[bold]ResNet20[/] (CIFAR-style, for 1×28×28 Fashion-MNIST): {ResNet20.ParameterCount:N0} parameters, {ResNet20.MultAdds:N0} mult-adds");
        _console.WriteLine(ResNet20.Summary);
        _console.MarkupLine($"[bold]ResNet50[/] (torchvision's resnet50): {ResNet50.ParameterCount:N0} parameters, {ResNet50.MultAdds / 1e9:0.00} G mult-adds at 224×224");
        _console.WriteLine(ResNet50.Summary);
        return 0;
    }

    private int Demo(torch.Device device, string? dataFolder, long seed, string output)
    {
        _console.Write(new Rule("[bold]1. The networks[/]").LeftJustified());
        _console.MarkupLine($"ResNet20: {ResNet20.ParameterCount:N0} parameters, {ResNet20.MultAdds / 1e6:0.0} M mult-adds; ResNet50: {ResNet50.ParameterCount:N0} parameters, {ResNet50.MultAdds / 1e9:0.00} G mult-adds (all known at build time).");
        _console.WriteLine(ResNet20.Summary);

        _console.Write(new Rule("[bold]2. A short training run[/]").LeftJustified());
        // Four epochs on at most 12,000 images (6,000 from the embedded subset) keep the demo to two or three minutes on two CPU cores.
        var settings = new TrainSettings(4, 128, 0.1, 5e-4, seed, 12000, 2000);
        var code = Train(device, dataFolder, settings, output);
        if (code != 0) return code;

        _console.Write(new Rule("[bold]3. Evaluation of the checkpoint[/]").LeftJustified());
        var checkpoint = CheckpointPath(null, output);
        code = Eval(device, dataFolder, checkpoint, 2000);
        if (code != 0) return code;

        _console.Write(new Rule("[bold]4. A prediction[/]").LeftJustified());
        var pictures = Path.Combine(output, "examples");
        Directory.CreateDirectory(pictures);
        using (var data = FashionMnist.Load(dataFolder))
        {
            foreach (var i in new[] { 0, 1, 2 })
            {
                var label = FashionMnist.Classes[data.TestLabels[i].item<long>()];
                using var image = data.TestImages[i];
                Images.SavePng(image, Path.Combine(pictures, $"test{i}-{label.Replace('/', '-').Replace(' ', '-').ToLowerInvariant()}.png"));
            }
        }
        _console.MarkupLine($"Three test images written to {Markup.Escape(pictures)} (their true class is in the file name); `predict` reads them back:");
        code = Predict(device, new[] { pictures }, checkpoint, 3);
        if (code != 0) return code;

        _console.Write(new Rule("[bold]5. Serving: ONNX[/]").LeftJustified());
        var model = Path.Combine(output, OnnxFile);
        code = Export(checkpoint, model, DefaultOpset);
        if (code != 0) return code;
        code = Predict(device, new[] { pictures }, checkpoint, 3, model);
        _console.MarkupLine("Train on the full data with [bold]dotnet run --project Sample -- train[/] (see --help).");
        return code;
    }
}
