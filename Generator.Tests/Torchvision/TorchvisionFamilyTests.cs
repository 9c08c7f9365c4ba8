using System;
using System.Linq;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Torchvision;

/// <summary>
/// The generated torchvision family against torchvision 0.14 itself: parameter counts, state_dict keys, dtypes and
/// shapes, and outputs for identical weights (Reference/ holds what make_reference.py wrote with python3-torchvision).
/// </summary>
public class TorchvisionFamilyTests
{
    [Theory]
    [MemberData(nameof(Family.Names), MemberType = typeof(Family))]
    public void Parameter_count_matches_torchvision(string model)
    {
        var (create, expected, constant) = Family.Models[model];
        Assert.Equal(expected, constant);
        using var network = create();
        Assert.Equal(expected, network.parameters().Sum(p => p.numel()));
    }

    [Theory]
    [MemberData(nameof(Family.Names), MemberType = typeof(Family))]
    public void State_dict_keys_dtypes_and_shapes_match_torchvision(string model)
    {
        using var network = Family.Models[model].Create();
        DeterministicWeights.AssertStateDictMatches(network, DeterministicWeights.ReadKeys(model));
    }

    [Theory]
    [MemberData(nameof(Family.Names), MemberType = typeof(Family))]
    public void Eval_outputs_match_torchvision_for_the_same_weights(string model)
    {
        using var network = Family.Models[model].Create();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats(model + ".eval.bin"), output, model);
    }

    [Theory]
    [InlineData("resnet18", "layer4.1.bn2")]
    [InlineData("resnet50", "layer4.2.bn3")]
    public void Train_mode_batch_norm_matches_torchvision(string model, string lastNorm)
    {
        using var network = Family.Models[model].Create();
        DeterministicWeights.Apply(network);
        network.train();
        using var input = DeterministicWeights.Input();
        using (var noGrad = torch.no_grad())
        using (var output = network.call(input))
        {
            Tolerance.AssertClose(DeterministicWeights.ReadFloats(model + ".train.bin"), output, model + " train-mode logits");
        }
        var state = network.state_dict();
        var expected = DeterministicWeights.ReadFloats(model + ".train.stats.bin");
        var offset = 0;
        foreach (var key in new[] { "bn1.running_mean", "bn1.running_var", lastNorm + ".running_mean", lastNorm + ".running_var" })
        {
            var count = (int)state[key].numel();
            Tolerance.AssertClose(expected.Skip(offset).Take(count).ToArray(), state[key], key + " after one train-mode forward");
            offset += count;
        }
        Assert.Equal(expected.Length, offset);
        Assert.Equal(1L, state["bn1.num_batches_tracked"].item<long>());
    }

    [Fact]
    public void Initialisation_follows_torchvision()
    {
        torch.manual_seed(1);
        using var network = new ResNet50();
        // kaiming_normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels · k · k)). A 1×1 convolution 64 → 256, whose
        // fan-out (256) and fan-in (64) differ, so fan_in's std (twice as large) would fall far outside the band; 16,384
        // draws give the std to ±0.6% and the kurtosis to ±0.04, so a uniform draw of the same std (kurtosis 1.8) fails too.
        var conv = network.layer1_0_conv3;
        Assert.Equal(new long[] { 256, 64, 1, 1 }, conv.weight!.shape);
        var expectedStd = Math.Sqrt(2.0 / (256 * 1 * 1));
        using var weights = conv.weight!.detach().to(torch.float64);
        var std = weights.std().item<double>();
        Assert.InRange(std, expectedStd * 0.97, expectedStd * 1.03);
        Assert.InRange(weights.mean().item<double>(), -expectedStd * 0.03, expectedStd * 0.03);
        using var standardised = (weights - weights.mean()) / std;
        var kurtosis = standardised.pow(4).mean().item<double>();
        Assert.InRange(kurtosis, 2.8, 3.2); // a normal distribution's is 3
        Assert.True(network.bn1.weight!.eq(1).all().item<bool>());
        Assert.True(network.bn1.bias!.eq(0).all().item<bool>());
        Assert.True(network.layer1_0_bn3.weight!.eq(1).all().item<bool>());

        using var zeroInit = new ResNet18ZeroInit();
        Assert.True(zeroInit.layer1_0_bn2.weight!.eq(0).all().item<bool>());
        Assert.True(zeroInit.layer1_0_bn1.weight!.eq(1).all().item<bool>());
        using var backbone = new ResNet50Backbone();
        Assert.True(backbone.layer4_2_bn3.weight!.eq(0).all().item<bool>());
    }
}
