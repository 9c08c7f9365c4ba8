using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Torchvision;

/// <summary>FuseForInference: batch-norm folded into the convolution before it, outputs unchanged.</summary>
public class FusionTests
{
    [Theory]
    [InlineData("resnet50")]
    [InlineData("resnext50_32x4d")]
    public void Folded_outputs_equal_the_unfused_network(string model)
    {
        using var network = Family.Models[model].Create();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var unfused = network.call(input);
        var fusible = (dynamic)network;
        fusible.FuseForInference();
        Assert.True((bool)fusible.IsFused);
        using var fused = network.call(input);
        Tolerance.AssertClose(unfused, fused, model + " folded");
    }

    [Fact]
    public void The_folded_forward_leaks_nothing_and_training_drops_the_fold()
    {
        using var network = new ResNet18();
        network.FuseForInference();
        using var input = torch.randn(2, 3, 64, 64);
        using (torch.no_grad())
        {
            var before = DeterministicWeights.LiveTensors;
            network.call(input).Dispose();
            Assert.Equal(before, DeterministicWeights.LiveTensors);
        }
        Assert.True(network.IsFused);
        network.train();
        using (var output = network.call(input)) Assert.Equal(new long[] { 2, 1000 }, output.shape);
        Assert.False(network.IsFused);
        Assert.Equal(11_689_512, System.Linq.Enumerable.Sum(network.parameters(), p => p.numel())); // the state_dict is untouched
    }
}
