using System;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using ResNetGen.Generator.Tests.SampleApplication;
using ResNetGen.Sample;
using Xunit;
using static ResNetGen.Generator.Tests.SampleApplication.SampleRunner;

namespace ResNetGen.Generator.Tests.Training;

/// <summary>The sample's train and finetune with the recipe options: what they say, what they save, what they refuse.</summary>
public sealed class RecipeCommandTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-recipe-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Train_with_the_whole_recipe_evaluates_and_saves_the_moving_average()
    {
        var data = SampleAppTests.TinyDataIn(_folder);
        var output = Path.Combine(_folder, "run");
        var (code, text) = Run("train", "--data", data, "--epochs", "2", "--limit", "256", "--batch-size", "64", "--output", output,
            "--optimizer", "adamw", "--label-smoothing", "0.1", "--mixup", "0.2", "--cutmix", "1.0", "--ema", "0.9", "--clip-grad", "1");
        Assert.True(code == 0, text);
        Assert.Contains("Recipe: AdamW, label smoothing 0.1, mixup α 0.2, cutmix α 1, gradients clipped to norm 1, EMA of the weights up to 0.9 (evaluated and saved); peak learning rate 0.002, weight decay 0.05.", text);
        Assert.Contains("EMA test acc", text);
        var line = Regex.Match(text, @"Checkpoint \(epoch 2, the weights' moving average: test accuracy (\d+\.\d\d)%; the trained weights scored (\d+\.\d\d)%\)");
        Assert.True(line.Success, text);
        var checkpoint = Path.Combine(output, SampleApp.Checkpoint);
        var metadata = Safetensors.ReadMetadata(checkpoint);
        Assert.Contains("moving average", metadata["ema"]);
        // The file holds the average: evaluated again, it scores what the average scored (on the same 51 test images).
        (code, var eval) = Run("eval", "--data", data, "--checkpoint", checkpoint, "--limit", "51");
        Assert.True(code == 0, eval);
        Assert.Contains($"accuracy {line.Groups[1].Value}% on 51 images", eval);
    }

    /// <summary>One epoch of <c>train</c> on 128 of <paramref name="data"/>'s pictures into <paramref name="output"/>, with <paramref name="options"/>.</summary>
    private (int Code, string Text) TinyTrain(string data, string output, params string[] options) =>
        Run(new[] { "train", "--data", data, "--epochs", "1", "--limit", "128", "--batch-size", "64", "--output", Path.Combine(_folder, output) }.Concat(options).ToArray());

    [Fact]
    public void Lamb_trains_and_the_default_recipe_is_the_original()
    {
        var data = SampleAppTests.TinyDataIn(_folder);
        var (code, text) = TinyTrain(data, "lamb", "--optimizer", "lamb");
        Assert.True(code == 0, text);
        Assert.Contains("Recipe: LAMB; peak learning rate 0.005, weight decay 0.02.", text);
        Assert.Matches(@"│ 1 +│ \d+\.\d+ ", text);
        (code, text) = TinyTrain(data, "sgd");
        Assert.True(code == 0, text);
        Assert.Contains("Recipe: Nesterov SGD; peak learning rate 0.1, weight decay 0.0005.", text);
        Assert.DoesNotContain("EMA", text);

        // A named recipe, and an option given beside it winning over the recipe's value.
        (code, text) = TinyTrain(data, "named", "--recipe", "fashion", "--label-smoothing", "0.2");
        Assert.True(code == 0, text);
        Assert.Contains("Recipe: Nesterov SGD, label smoothing 0.2, gradients clipped to norm 1; peak learning rate 0.1, weight decay 0.0005.", text);
    }

    [Fact]
    public void Finetune_takes_the_recipe_too()
    {
        var images = HostilePictureTests.PictureFolder(Path.Combine(_folder, "images")); // two classes, three pictures each in train/ and val/
        var output = Path.Combine(_folder, "tuned");
        var (code, text) = Run("finetune", "--images", images, "--size", "32", "--epochs", "1", "--batch-size", "4", "--output", output,
            "--optimizer", "adamw", "--label-smoothing", "0.1", "--ema", "0.5");
        Assert.True(code == 0, text);
        Assert.Contains("Recipe: AdamW, label smoothing 0.1, EMA of the weights up to 0.5 (evaluated and saved); peak learning rate 0.001, weight decay 0.05.", text);
        Assert.Contains("EMA val acc", text);
        Assert.Equal("0.5", Safetensors.ReadMetadata(Path.Combine(output, SampleApp.FineTunedCheckpoint))["ema_decay"]);
    }

    [Fact]
    public void Augment_runs_on_both_kinds_of_data_after_the_crop_and_before_normalising()
    {
        var data = SampleAppTests.TinyDataIn(_folder);
        var (code, text) = TinyTrain(data, "ra", "--augment", "randaugment");
        Assert.True(code == 0, text);
        Assert.Contains("Recipe: Nesterov SGD, RandAugment (2 operations at magnitude 9); peak learning rate 0.1, weight decay 0.0005.", text);

        // A picture folder: augmented crops differ from plain ones drawn from the same generator state, and every value is
        // still a normalised byte (the augmentation works on bytes, the normalisation comes after).
        var images = HostilePictureTests.PictureFolder(Path.Combine(_folder, "images"));
        var preprocessing = new Preprocessing(24, 0.875, "bilinear", Preprocessing.ImageNetMean, Preprocessing.ImageNetStd);
        var folder = ImageFolder.Open(images, preprocessing);
        using var indices = TorchSharp.torch.arange(6L);
        using var plainGenerator = new TorchSharp.torch.Generator(3);
        var (plain, _) = folder.TrainBatch(indices, plainGenerator, TorchSharp.torch.CPU);
        folder.Augmentation = new ResNetGen.Training.TrivialAugmentWide();
        using var augmentedGenerator = new TorchSharp.torch.Generator(3);
        var (augmented, _) = folder.TrainBatch(indices, augmentedGenerator, TorchSharp.torch.CPU);
        Assert.False(plain.equal(augmented).all().item<bool>());
        var values = augmented.data<float>().ToArray();
        for (var i = 0; i < values.Length; i++)
        {
            var c = i / (24 * 24) % 3;
            var level = (values[i] * preprocessing.Std[c] + preprocessing.Mean[c]) * 255;
            Assert.True(Math.Abs(level - Math.Round(level)) < 1e-3 && level > -0.5 && level < 255.5, $"value {i} is not a normalised byte: {level}");
        }
    }

    [Fact]
    public void Bad_recipe_options_are_usage_errors_that_say_what_is_allowed()
    {
        AssertUsageError(Run("train", "--optimizer", "adam"), "Argument 'adam' not recognized. Must be one of:");
        AssertUsageError(Run("train", "--ema", "1"), "--ema 1: must be between 0 and 1, e.g. 0.999");
        AssertUsageError(Run("train", "--label-smoothing", "1"), "--label-smoothing 1: must be in [0, 1)");
        AssertUsageError(Run("finetune", "--images", _folder, "--clip-grad", "0"), "--clip-grad 0: must be positive");
        AssertUsageError(Run("train", "--mixup", "-1"), "--mixup -1: must be 0 (off) to 10");
        AssertUsageError(Run("train", "--augment", "autoaugment"), "Argument 'autoaugment' not recognized. Must be one of:");
    }
}
