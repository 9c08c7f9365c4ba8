using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen.Training;

/// <summary>
/// An exponential moving average of a network's weights with timm's <c>ModelEmaV3</c> semantics: every floating-point
/// tensor of the state_dict (parameters and the batch-norm running statistics) moves towards the network's as
/// ema ← ema + (1 − decay)·(model − ema) after each update; integer buffers (<c>num_batches_tracked</c>) are copied.
/// With a step number the decay is 0 for the first <see cref="UpdateAfterStep"/> + 1 steps (the average starts as the
/// network) and, with <see cref="UseWarmup"/>, 1 − (1 + step/γ)^−power, clamped to [<see cref="MinDecay"/>,
/// <see cref="Decay"/>], so that an average over a short run is not dominated by its random start.
/// The average is kept as tensors beside the network (TorchSharp cannot copy a module): <see cref="CopyTo"/> loads it into
/// another instance of the same network to evaluate or save it.
/// </summary>
public sealed class ModelEma : IDisposable
{
    private readonly List<(string Key, torch.Tensor Value)> _state;
    private bool _disposed;

    /// <param name="model">The network whose weights are averaged; the average starts as a copy of its state_dict.</param>
    /// <param name="decay">The decay once warmed up (timm's default 0.9999; 0.999 and below for short runs).</param>
    /// <param name="minDecay">The smallest decay warm-up gives.</param>
    /// <param name="updateAfterStep">Steps (with a step number) during which the average is set to the network instead.</param>
    /// <param name="useWarmup">Whether the decay grows with the step number as 1 − (1 + step/γ)^−power.</param>
    /// <param name="warmupGamma">γ of the warm-up.</param>
    /// <param name="warmupPower">The power of the warm-up (2/3 for long runs, 3/4 for shorter ones).</param>
    /// <param name="excludeBuffers">Whether buffers are copied instead of averaged (timm's <c>exclude_buffers</c>).</param>
    public ModelEma(torch.nn.Module model, double decay = 0.9999, double minDecay = 0.0, int updateAfterStep = 0, bool useWarmup = false,
        double warmupGamma = 1.0, double warmupPower = 2.0 / 3, bool excludeBuffers = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(decay >= 0 && decay <= 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "must be in [0, 1]");
        if (!(minDecay >= 0 && minDecay <= decay)) throw new ArgumentOutOfRangeException(nameof(minDecay), minDecay, "must be in [0, decay]");
        if (updateAfterStep < 0) throw new ArgumentOutOfRangeException(nameof(updateAfterStep), updateAfterStep, "must be 0 or more");
        if (!(warmupGamma > 0)) throw new ArgumentOutOfRangeException(nameof(warmupGamma), warmupGamma, "must be positive");
        if (!(warmupPower > 0)) throw new ArgumentOutOfRangeException(nameof(warmupPower), warmupPower, "must be positive");
        (Decay, MinDecay, UpdateAfterStep, UseWarmup, WarmupGamma, WarmupPower, ExcludeBuffers) = (decay, minDecay, updateAfterStep, useWarmup, warmupGamma, warmupPower, excludeBuffers);
        using var noGrad = torch.no_grad();
        _parameterKeys = model.named_parameters().Select(p => p.name).ToHashSet(StringComparer.Ordinal);
        _state = model.state_dict().Select(kv => (kv.Key, kv.Value.detach().clone().DetachFromDisposeScope())).ToList();
    }

    private readonly HashSet<string> _parameterKeys;

    /// <summary>The decay once warmed up.</summary>
    public double Decay { get; }

    /// <summary>The smallest decay warm-up gives.</summary>
    public double MinDecay { get; }

    /// <summary>Steps during which the average is set to the network.</summary>
    public int UpdateAfterStep { get; }

    /// <summary>Whether the decay warms up with the step number.</summary>
    public bool UseWarmup { get; }

    /// <summary>γ of the warm-up.</summary>
    public double WarmupGamma { get; }

    /// <summary>The power of the warm-up.</summary>
    public double WarmupPower { get; }

    /// <summary>Whether buffers are copied rather than averaged.</summary>
    public bool ExcludeBuffers { get; }

    /// <summary>Updates made so far.</summary>
    public long Updates { get; private set; }

    /// <summary>The averaged state_dict, in the network's key order (tensors owned by this object: copy what you keep).</summary>
    public IReadOnlyList<(string Key, torch.Tensor Value)> State => _state;

    /// <summary>The decay an update at <paramref name="step"/> uses (timm's <c>get_decay</c>; null: <see cref="Decay"/>).</summary>
    public double DecayAt(long? step)
    {
        if (step is not { } s) return Decay;
        var warmed = Math.Max(0, s - UpdateAfterStep - 1);
        if (warmed <= 0) return 0.0;
        return UseWarmup ? Math.Max(Math.Min(1 - Math.Pow(1 + warmed / WarmupGamma, -WarmupPower), Decay), MinDecay) : Decay;
    }

    /// <summary>Moves the average towards <paramref name="model"/>'s weights (after an optimiser step), with the decay at <paramref name="step"/>.</summary>
    public void Update(torch.nn.Module model, long? step = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var decay = DecayAt(step);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var current = Matching(model);
        for (var i = 0; i < _state.Count; i++)
        {
            var (key, ema) = _state[i];
            var source = current[i];
            if (!ema.is_floating_point() || (ExcludeBuffers && !_parameterKeys.Contains(key)))
            {
                ema.copy_(source, false);
                continue;
            }
            using var weight = torch.tensor(1 - decay, ema.dtype, ema.device);
            using var onDevice = source.to(ema.device);
            ema.lerp_(onDevice, weight);
        }
        Updates++;
    }

    /// <summary>Sets the average to <paramref name="model"/>'s weights.</summary>
    public void Set(torch.nn.Module model)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var current = Matching(model);
        for (var i = 0; i < _state.Count; i++) _state[i].Value.copy_(current[i], false);
    }

    /// <summary>Copies the average into <paramref name="target"/>, another instance of the averaged network (to evaluate or save it).</summary>
    public void CopyTo(torch.nn.Module target)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var destination = Matching(target);
        for (var i = 0; i < _state.Count; i++) destination[i].copy_(_state[i].Value, false);
    }

    private torch.Tensor[] Matching(torch.nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var state = model.state_dict();
        var result = new torch.Tensor[_state.Count];
        for (var i = 0; i < _state.Count; i++)
        {
            var (key, ema) = _state[i];
            if (!state.TryGetValue(key, out var tensor))
                throw new ArgumentException($"the network has no '{key}': an average is of one network's state_dict; give the same network (or an instance of the same class).", nameof(model));
            if (!tensor.shape.SequenceEqual(ema.shape))
                throw new ArgumentException($"'{key}' is [{string.Join(", ", tensor.shape)}] in the network but [{string.Join(", ", ema.shape)}] in the average: not the averaged network.", nameof(model));
            result[i] = tensor;
        }
        if (state.Count != _state.Count)
            throw new ArgumentException($"the network has {state.Count} state_dict entries, the average {_state.Count}: not the averaged network.", nameof(model));
        return result;
    }

    /// <summary>Frees the averaged tensors.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var (_, value) in _state) value.Dispose();
    }
}
