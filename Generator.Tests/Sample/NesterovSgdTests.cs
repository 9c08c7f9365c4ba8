using System.Linq;
using ResNetGen.Generator.Tests.Weights;
using ResNetGen.Sample;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>The sample's SGD computes what TorchSharp's (PyTorch's) SGD with Nesterov momentum and weight decay computes, bit for bit.</summary>
public sealed class NesterovSgdTests
{
    [Fact]
    public void Three_steps_match_torch_optim_sgd_exactly()
    {
        // The same starting weights by copy, not by reseeding: a test running in parallel may draw from the global
        // generator between a manual_seed and a constructor (seen as a failure under the full suite's load).
        using var ours = new ResNet20();
        using var theirs = new ResNet20();
        theirs.load_state_dict(ours.state_dict());
        using var sgd = new NesterovSgd(ours.parameters(), momentum: 0.9, weightDecay: 5e-4);
        using var reference = torch.optim.SGD(theirs.parameters(), 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: true);
        var generator = new torch.Generator(11);
        foreach (var lr in new[] { 0.1, 0.05, 0.02 })
        {
            using var scope = torch.NewDisposeScope();
            var x = torch.randn(new long[] { 8, 1, 28, 28 }, generator: generator);
            var y = torch.randint(0, 10, new long[] { 8 }, generator: generator);
            sgd.LearningRate = lr;
            foreach (var group in reference.ParamGroups) group.LearningRate = lr;
            sgd.ZeroGrad();
            reference.zero_grad();
            torch.nn.functional.cross_entropy(ours.call(x), y).backward();
            torch.nn.functional.cross_entropy(theirs.call(x), y).backward();
            sgd.Step();
            reference.step();
        }
        var a = ours.state_dict();
        var b = theirs.state_dict();
        Assert.All(a.Keys, key => Assert.True(WeightTestKit.Same(a[key], b[key]), key));
        using var untrained = new ResNet20();
        Assert.False(WeightTestKit.Same(a["conv1.weight"], untrained.state_dict()["conv1.weight"])); // it did train
    }
}
