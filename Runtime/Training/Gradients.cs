using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen.Training;

/// <summary>Gradient clipping, scalar-safe.</summary>
public static class Gradients
{
    /// <summary>
    /// <c>torch.nn.utils.clip_grad_norm_</c>: the 2-norm of all gradients together; when it exceeds
    /// <paramref name="maxNorm"/>, every gradient is multiplied by maxNorm / (norm + 1e-6). Returns the norm before
    /// clipping (infinite or NaN when a gradient is; then nothing is changed and the caller decides, e.g. to skip the step).
    /// </summary>
    public static double ClipNorm(IEnumerable<Parameter> parameters, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(maxNorm > 0) || double.IsInfinity(maxNorm)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "must be a positive finite number");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return 0.0;
        var norms = torch.stack(grads.Select(L2Norm).ToArray());
        var total = L2Norm(norms);
        var value = total.item<float>();
        if (!float.IsFinite(value)) return value;
        using var epsilon = 1e-6.ToScalar();
        using var one = 1.0.ToScalar();
        using var max = maxNorm.ToScalar();
        var coefficient = torch.ones_like(total).mul_(max).div_(total.add(epsilon, one)).clamp_max_(one); // max_norm / (norm + 1e-6), as PyTorch divides
        foreach (var g in grads) g.mul_(coefficient);
        return value;
    }

    /// <summary>
    /// The 2-norm of all of a tensor's elements. Not <c>torch.linalg.vector_norm(t, 2.0)</c>: TorchSharp turns its
    /// <c>ord</c> into a temporary <c>Scalar</c> that nothing holds, which the garbage collector may finalise while
    /// libtorch reads it ("Expected false to be true" from <c>Scalar::toDouble</c>, seen under the stress test);
    /// <c>Tensor.norm(float)</c> passes the order by value.
    /// </summary>
    internal static torch.Tensor L2Norm(torch.Tensor tensor) => tensor.norm(2.0f);
}
