using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>
/// Dynamic loss scaling for float16 training, as PyTorch's <c>torch.amp.GradScaler</c> does it with the same defaults
/// (TorchSharp has none): the loss is multiplied by the scale before backward so that small float16 gradients do not
/// underflow; before the optimiser steps, the gradients are divided by it again and checked, and a step whose gradients
/// are not all finite is skipped, so no inf or NaN reaches the weights; the scale then backs off (× 0.5) after a skipped
/// step and grows (× 2) after <see cref="GrowthInterval"/> steps in a row without one.
/// </summary>
/// <example>
/// <code>
/// var scaler = new GradScaler();
/// net.Precision = Precision.Float16;
/// // each step:
/// using (var scaled = scaler.ScaleLoss(loss)) scaled.backward();
/// scaler.Step(parameters, optimizer.Step);   // unscales, checks, steps unless a gradient is not finite
/// scaler.Update();                            // backs off or grows the scale
/// </code>
/// </example>
public sealed class GradScaler
{
    private enum Stage { Ready, Unscaled, Stepped }

    private Stage _stage = Stage.Ready;
    private bool? _foundNonFinite;

    /// <param name="initScale">The first scale (PyTorch's default 2¹⁶).</param>
    /// <param name="growthFactor">What the scale is multiplied by after <paramref name="growthInterval"/> clean steps (&gt; 1).</param>
    /// <param name="backoffFactor">What it is multiplied by after a skipped step (between 0 and 1).</param>
    /// <param name="growthInterval">Clean steps in a row before it grows (≥ 1).</param>
    /// <param name="enabled">False: no scaling, every step taken (for code that runs in float32 and float16 alike).</param>
    public GradScaler(double initScale = 65536.0, double growthFactor = 2.0, double backoffFactor = 0.5, int growthInterval = 2000, bool enabled = true)
    {
        if (!(initScale > 0) || double.IsInfinity(initScale)) throw new ArgumentOutOfRangeException(nameof(initScale), initScale, "the scale must be a positive finite number");
        if (!(growthFactor > 1)) throw new ArgumentOutOfRangeException(nameof(growthFactor), growthFactor, "the growth factor must be > 1.0");
        if (!(backoffFactor > 0 && backoffFactor < 1)) throw new ArgumentOutOfRangeException(nameof(backoffFactor), backoffFactor, "the backoff factor must be between 0 and 1");
        if (growthInterval < 1) throw new ArgumentOutOfRangeException(nameof(growthInterval), growthInterval, "the growth interval must be at least 1");
        Scale = (float)initScale;
        GrowthFactor = growthFactor;
        BackoffFactor = backoffFactor;
        GrowthInterval = growthInterval;
        Enabled = enabled;
    }

    /// <summary>Whether the scaler scales at all.</summary>
    public bool Enabled { get; }

    /// <summary>The current scale (float32, as PyTorch keeps it); 1 when disabled.</summary>
    public float Scale { get; private set; }

    /// <summary>The factor the scale grows by.</summary>
    public double GrowthFactor { get; }

    /// <summary>The factor the scale backs off by.</summary>
    public double BackoffFactor { get; }

    /// <summary>Clean steps in a row before the scale grows.</summary>
    public int GrowthInterval { get; }

    /// <summary>Clean steps since the scale last changed (PyTorch's growth tracker).</summary>
    public int GrowthTracker { get; private set; }

    /// <summary>Steps taken.</summary>
    public long StepsTaken { get; private set; }

    /// <summary>Steps skipped because a gradient was not finite.</summary>
    public long StepsSkipped { get; private set; }

    /// <summary>Whether the last <see cref="Step(IEnumerable{Parameter}, Action)"/> was skipped.</summary>
    public bool LastStepSkipped { get; private set; }

    /// <summary>
    /// <paramref name="loss"/> × the scale, to call backward on (a new tensor: dispose it). Disabled: a new handle on
    /// <paramref name="loss"/>.
    /// </summary>
    public torch.Tensor ScaleLoss(torch.Tensor loss)
    {
        if (loss is null) throw new ArgumentNullException(nameof(loss));
        if (!Enabled) return loss.alias();
        // A held tensor, not a number: TorchSharp's temporary scalars can be freed while libtorch reads them.
        using var scale = torch.tensor(Scale, torch.ScalarType.Float32, loss.device);
        return loss.mul(scale);
    }

    /// <summary>
    /// Divides the gradients of <paramref name="parameters"/> by the scale in place and records whether any was not
    /// finite (PyTorch's <c>unscale_</c>): optional, for code that reads or clips the true gradients before the step.
    /// Once per step.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called twice before <see cref="Update()"/>, or after the step.</exception>
    public void Unscale(IEnumerable<Parameter> parameters)
    {
        if (parameters is null) throw new ArgumentNullException(nameof(parameters));
        if (!Enabled) return;
        if (_stage == Stage.Unscaled) throw new InvalidOperationException("Unscale has already been called since the last Update.");
        if (_stage == Stage.Stepped) throw new InvalidOperationException("Unscale is being called after Step; call Update first.");
        // PyTorch's: the reciprocal in double, then float.
        var inverse = (float)(1.0 / Scale);
        var nonFinite = new List<torch.Tensor>();
        using (torch.no_grad())
        {
            var inverses = new Dictionary<(DeviceType, int), torch.Tensor>();
            try
            {
                foreach (var parameter in parameters)
                {
                    using var grad = parameter.grad;
                    if (grad is null) continue;
                    if (grad.dtype == torch.ScalarType.Float16)
                        throw new InvalidOperationException("GradScaler unscales float32 gradients (the master parameters); this parameter's are float16. " +
                                                            "Keep the parameters float32 and set the network's Precision to Float16 instead of converting it with half().");
                    var key = (grad.device_type, grad.device_index);
                    if (!inverses.TryGetValue(key, out var scale))
                        inverses[key] = scale = torch.tensor(inverse, torch.ScalarType.Float32, grad.device);
                    // Checked before the multiplication, as PyTorch's kernel does.
                    using var finite = grad.isfinite();
                    using var all = finite.all();
                    nonFinite.Add(all.logical_not());
                    grad.mul_(scale);
                }
                if (nonFinite.Count == 0)
                {
                    _foundNonFinite = false;
                }
                else
                {
                    using var onCpu = new DisposableList(nonFinite.Select(t => t.cpu()));
                    using var stacked = torch.stack(onCpu.Items);
                    using var any = stacked.any();
                    _foundNonFinite = any.item<bool>();
                }
            }
            finally
            {
                foreach (var t in nonFinite) t.Dispose();
                foreach (var t in inverses.Values) t.Dispose();
            }
        }
        _stage = Stage.Unscaled;
    }

    /// <summary>
    /// Unscales the gradients unless <see cref="Unscale(IEnumerable{Parameter})"/> already did, then runs <paramref name="step"/> (the optimiser's
    /// step) only if every gradient is finite. Returns whether it stepped.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called twice before <see cref="Update()"/>.</exception>
    public bool Step(IEnumerable<Parameter> parameters, Action step)
    {
        if (parameters is null) throw new ArgumentNullException(nameof(parameters));
        if (step is null) throw new ArgumentNullException(nameof(step));
        if (!Enabled)
        {
            step();
            StepsTaken++;
            return true;
        }
        if (_stage == Stage.Stepped) throw new InvalidOperationException("Step has already been called since the last Update.");
        if (_stage == Stage.Ready) Unscale(parameters);
        LastStepSkipped = _foundNonFinite == true;
        if (LastStepSkipped) StepsSkipped++;
        else
        {
            step();
            StepsTaken++;
        }
        _stage = Stage.Stepped;
        return !LastStepSkipped;
    }

    /// <summary>As <see cref="Step(IEnumerable{Parameter}, Action)"/> with a TorchSharp optimiser's parameters and step.</summary>
    public bool Step(torch.optim.Optimizer optimizer)
    {
        if (optimizer is null) throw new ArgumentNullException(nameof(optimizer));
        return Step(optimizer.parameters(), () => optimizer.step());
    }

    /// <summary>
    /// Ends the step: after a skipped one the scale backs off and the count of clean steps restarts; after a clean one the
    /// count grows, and at <see cref="GrowthInterval"/> the scale grows (if it stays finite) and the count restarts
    /// (PyTorch's <c>_amp_update_scale_</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException">No gradients were checked since the last update (no Unscale or Step).</exception>
    public void Update()
    {
        if (!Enabled) return;
        if (_foundNonFinite is not { } found)
            throw new InvalidOperationException("Update needs the gradients checked first: call Step (or Unscale) after backward, then Update.");
        if (found)
        {
            Scale = (float)(Scale * BackoffFactor);
            GrowthTracker = 0;
        }
        else
        {
            var successful = GrowthTracker + 1;
            if (successful == GrowthInterval)
            {
                var grown = (float)(Scale * GrowthFactor);
                if (!float.IsInfinity(grown) && !float.IsNaN(grown)) Scale = grown;
                GrowthTracker = 0;
            }
            else GrowthTracker = successful;
        }
        Reset();
    }

    /// <summary>Ends the step with the scale set to <paramref name="newScale"/> (PyTorch's <c>update(new_scale)</c>).</summary>
    public void Update(float newScale)
    {
        if (!(newScale > 0) || float.IsInfinity(newScale)) throw new ArgumentOutOfRangeException(nameof(newScale), newScale, "the scale must be a positive finite number");
        if (!Enabled) return;
        Scale = newScale;
        Reset();
    }

    private void Reset()
    {
        _stage = Stage.Ready;
        _foundNonFinite = null;
    }

    private sealed class DisposableList : IDisposable
    {
        public DisposableList(IEnumerable<torch.Tensor> items) => Items = items.ToArray();

        public torch.Tensor[] Items { get; }

        public void Dispose()
        {
            foreach (var t in Items) t.Dispose();
        }
    }
}
