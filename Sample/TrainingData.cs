using System.Collections.Generic;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>What <see cref="Trainer"/> trains and evaluates on: Fashion-MNIST, or a folder of pictures.</summary>
public interface ITrainingData
{
    /// <summary>The class names, in label order.</summary>
    IReadOnlyList<string> Classes { get; }

    long TrainCount { get; }
    long TestCount { get; }

    /// <summary>The training images at <paramref name="indices"/>, augmented and normalised on <paramref name="device"/>, and their labels.</summary>
    (torch.Tensor Images, torch.Tensor Labels) TrainBatch(torch.Tensor indices, torch.Generator generator, torch.Device device);

    /// <summary>Test images <paramref name="start"/> … <paramref name="start"/> + <paramref name="count"/> − 1, normalised, and their labels.</summary>
    (torch.Tensor Images, torch.Tensor Labels) TestBatch(long start, long count, torch.Device device);

    /// <summary>How many test images one evaluation step takes.</summary>
    int TestBatchSize { get; }

    /// <summary>
    /// An automatic augmentation (TrivialAugmentWide, RandAugment) of each training picture's bytes, drawn from the
    /// training generator, before normalisation; null (the default) for none.
    /// </summary>
    ResNetGen.Training.AutoAugment? Augmentation { get; set; }
}
