using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen.Sample;

/// <summary>
/// SGD with Nesterov momentum and weight decay, op for op as torch.optim.SGD computes it (dampening 0). Written here
/// because TorchSharp's SGD passes every coefficient as a temporary <see cref="Scalar"/> that the garbage collector may
/// free while libtorch still reads it — a training run that dies with "Unknown scalar type" after minutes. Here each
/// scalar lives in a local that is disposed only after the step.
/// </summary>
public sealed class NesterovSgd : ResNetGen.Training.IOptimizer
{
    private readonly List<Parameter> _parameters;
    private readonly torch.Tensor?[] _momentum;

    public NesterovSgd(IEnumerable<Parameter> parameters, double momentum, double weightDecay)
    {
        _parameters = parameters.ToList();
        _momentum = new torch.Tensor?[_parameters.Count];
        Momentum = momentum;
        WeightDecay = weightDecay;
    }

    public double LearningRate { get; set; }
    public double Momentum { get; }
    public double WeightDecay { get; }

    /// <summary>Zeroes every gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var parameter in _parameters)
        {
            using var grad = parameter.grad;
            grad?.zero_();
        }
    }

    /// <summary>d = g + λθ; b = μb + d (b = d the first time); θ −= lr·(d + μb).</summary>
    public void Step()
    {
        using var noGrad = torch.no_grad();
        using var decay = WeightDecay.ToScalar();
        using var momentum = Momentum.ToScalar();
        using var one = 1.0.ToScalar();
        using var step = (-LearningRate).ToScalar();
        for (var i = 0; i < _parameters.Count; i++)
        {
            var parameter = _parameters[i];
            using var grad = parameter.grad;
            if (grad is null) continue;
            using var d = WeightDecay != 0 ? grad.add(parameter, decay) : grad.alias();
            if (_momentum[i] is not { } buffer) _momentum[i] = d.clone().detach().DetachFromDisposeScope(); // lives across steps
            else buffer.mul_(momentum).add_(d, one);
            using var update = d.add(_momentum[i]!, momentum);
            parameter.add_(update, step);
        }
    }

    public void Dispose()
    {
        foreach (var buffer in _momentum) buffer?.Dispose();
    }
}
