using System.Collections.Generic;
using System.Linq;
using ResNetGen.Benchmarks;
using ResNet20 = ResNetGen.Benchmarks.ResNet20;
using ResNet50 = ResNetGen.Benchmarks.ResNet50;
using ResNetGen.Benchmarks.Peers;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Benchmarks;

/// <summary>
/// The benchmark compares like with like only if the peer computes what the generated network computes, and it is
/// only useful if every case it lists runs. Both are checked here; the timing itself is the benchmark project's.
/// </summary>
public class BenchmarkCaseTests
{
    [Fact]
    public void The_peer_has_the_generated_state_dict_and_outputs()
    {
        using var generated = new ResNet50();
        using var peer = PeerResNet.ResNet50();
        AssertSameNetwork(generated, peer, "ResNet-50 eval");
    }

    /// <summary>The peer has the generated network's keys and shapes, takes its weights, and gives its eval outputs.</summary>
    private static void AssertSameNetwork(torch.nn.Module<torch.Tensor, torch.Tensor> generated, torch.nn.Module<torch.Tensor, torch.Tensor> peer, string what)
    {
        Assert.Equal(generated.state_dict().Keys.OrderBy(k => k), peer.state_dict().Keys.OrderBy(k => k));
        Assert.All(generated.state_dict(), kv => Assert.Equal(kv.Value.shape, peer.state_dict()[kv.Key].shape));
        DeterministicWeights.Apply(generated);
        Case.SameWeights(generated, peer);
        generated.eval();
        peer.eval();
        using var input = DeterministicWeights.Input();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        Tolerance.AssertClose(peer.call(input), generated.call(input), what);
    }

    [Theory]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    public void TorchSharps_torchvision_models_take_the_generated_weights_and_give_its_outputs(string name)
    {
        using torch.nn.Module<torch.Tensor, torch.Tensor> generated = name == "resnet18" ? new ResNetGen.Benchmarks.ResNet18() : new ResNet50();
        using var peer = name == "resnet18" ? torchvision.models.resnet18() : torchvision.models.resnet50();
        AssertSameNetwork(generated, peer, $"TorchVision's {name} eval");
        // Each family's ratios are to TorchVision's model in a DisposeScope where there is one.
        Assert.Equal(name + "-infer/torchvision", Case.PeerOf(name + "-infer", Case.Names));
        Assert.Equal("resnet20-train/handwritten", Case.PeerOf("resnet20-train", Case.Names));
    }

    [Fact]
    public void A_peer_training_step_matches_the_generated_one()
    {
        // In float64, so that what is compared is the arithmetic, not float32 rounding (which batch-norm's backward
        // amplifies to ~1e-3 of the largest gradient once the summation order changes, as channels-last changes it).
        (double loss, torch.Tensor conv1Grad) Step(torch.nn.Module<torch.Tensor, torch.Tensor> network, torch.Tensor input, torch.Tensor labels)
        {
            network.train();
            using var logits = network.call(input);
            using var loss = torch.nn.functional.cross_entropy(logits, labels);
            loss.backward();
            var grad = network.named_parameters().First(p => p.name == "conv1.weight").parameter.grad!.clone();
            return (loss.item<double>(), grad);
        }
        using var generated = new ResNet20();
        using var peer = PeerResNet.ResNet20();
        DeterministicWeights.Apply(generated);
        Case.SameWeights(generated, peer);
        generated.to(torch.float64);
        peer.to(torch.float64);
        generated.ActivationLayout = ActivationLayout.ChannelsLast; // and the peer in NCHW
        using var input = DeterministicWeights.Input(16, 3, 32, 32).to(torch.float64);
        using var labels = torch.arange(16).remainder(10);
        var (peerLoss, peerGrad) = Step(peer, input, labels);
        var (generatedLoss, generatedGrad) = Step(generated, input, labels);
        Assert.Equal(peerLoss, generatedLoss, 10);
        Tolerance.AssertClose(peerGrad, generatedGrad, "conv1.weight.grad", relative: 1e-10);
        peerGrad.Dispose();
        generatedGrad.Dispose();
    }

    [Fact]
    public void Cases_are_chosen_by_whole_name_or_family_and_help_is_not_an_error()
    {
        Assert.Null(Options.Parse(new[] { "--help" }, out var help));
        Assert.True(help);
        Assert.Equal(new[] { "mm-2048", "resnet50-infer/torchvision" }, Options.Parse(new[] { "--cases", "resnet50-infer/torchvision" }, out _)!.Cases);
        var family = Options.Parse(new[] { "--cases", "resnet50-infer" }, out _)!.Cases;
        Assert.Contains("resnet50-infer/torchvision-no-scope", family);
        Assert.Contains("resnet50-infer/engine-int8", family);
        Assert.DoesNotContain(family, c => c.StartsWith("resnet50-infer-b1/", System.StringComparison.Ordinal));
        Assert.Null(Options.Parse(new[] { "--cases", "resnet50-inf" }, out help)); // no longer a prefix of anything
        Assert.False(help);
    }

    public static IEnumerable<object[]> Names() => Case.Names.Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Names))]
    public void Every_listed_case_sets_up_and_runs(string name)
    {
        // Channels-last and bfloat16 cases compute on the kernels that some CPUs get wrong or crash in: in a child process.
        if (name.Contains("channels-last") || name.Contains("-bf16")) Isolated.Run<BenchmarkCaseTests>(nameof(RunCaseNamedInTheEnvironment), (CaseVariable, name));
        else RunCase(name);
    }

    private const string CaseVariable = "RESNETGEN_TEST_BENCHMARK_CASE";

    internal static void RunCaseNamedInTheEnvironment() => RunCase(System.Environment.GetEnvironmentVariable(CaseVariable)!);

    private static void RunCase(string name)
    {
        using var c = Case.Create(name);
        c.Run();
        Assert.True(double.IsNaN(Case.Gflop(name)) == name.StartsWith("generator/"), "every timed network case has a nominal work figure");
    }

    [Fact]
    public void Each_bfloat16_case_is_compared_in_round_with_its_float32_case()
    {
        foreach (var name in Case.Names.Where(n => n.Contains("-bf16")))
            Assert.Contains(Case.Float32Of(name)!, Case.Names);
        Assert.Equal("resnet50-infer/generated-channels-last", Case.Float32Of("resnet50-infer/generated-channels-last-bf16-whole"));
        Assert.Null(Case.Float32Of("resnet50-infer/generated"));
    }

    [Fact]
    public void An_unknown_case_is_refused_with_the_list()
    {
        var error = Assert.Throws<System.ArgumentException>(() => Case.Create("resnet51-infer/peer"));
        Assert.Contains("unknown case 'resnet51-infer/peer'", error.Message);
        Assert.Contains("resnet50-infer/generated-channels-last", error.Message);
    }
}
