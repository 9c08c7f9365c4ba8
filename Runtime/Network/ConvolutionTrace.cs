using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// One convolution a generated network ran while a <see cref="ConvolutionTrace"/> listened: what the convolution
/// received, not what the network was given.
/// </summary>
/// <param name="Module">The convolution module (<c>null</c> for the blur pool's fixed filter, which is not a module).</param>
/// <param name="Kind"><c>conv2d</c>, <c>folded conv2d</c> (a convolution with its batch-norm folded in), <c>standardized conv2d</c>, <c>blur</c> or <c>conv1d</c>.</param>
/// <param name="Shape">The input's shape.</param>
/// <param name="Strides">The input's strides, in elements.</param>
/// <param name="DType">The input's dtype, after any mixed-precision cast the step makes itself.</param>
public sealed record ConvolutionCall(torch.nn.Module? Module, string Kind, long[] Shape, long[] Strides, torch.ScalarType DType)
{
    /// <summary>
    /// Whether the input was laid out channels-last as libtorch judges it (<c>is_contiguous(channels_last)</c>: strides of
    /// size-1 dimensions do not count, so a pooled [N, C, 1, 1] input is both this and <see cref="Contiguous"/>).
    /// </summary>
    public bool ChannelsLast => Shape.Length == 4 && Packed(new[] { 1, 3, 2, 0 });

    /// <summary>Whether the input was laid out in the standard contiguous order (NCHW for 4-D), as libtorch judges it.</summary>
    public bool Contiguous => Packed(Enumerable.Range(0, Shape.Length).Reverse().ToArray());

    /// <summary>Whether the spatial size is larger than 1×1, where the two layouts are different memory orders.</summary>
    public bool Spatial => Shape.Length == 4 && Shape[2] * Shape[3] > 1;

    private bool Packed(int[] innermostFirst)
    {
        long expected = 1;
        foreach (var d in innermostFirst)
        {
            if (Shape[d] != 1 && Strides[d] != expected) return false;
            expected *= Shape[d];
        }
        return true;
    }
}

/// <summary>
/// Listens to the convolutions a generated network runs on this thread: each one's input shape, strides and dtype, as
/// the kernel receives it. A debugging aid for layouts and precisions (does a channels-last forward stay channels-last
/// through squeeze-excite, the blur pool, group-norm?); when no trace is open, a forward pays one thread-static read per
/// convolution.
/// <code>
/// using (var trace = ConvolutionTrace.Start())
/// {
///     using var logits = network.call(input);
///     foreach (var call in trace.Calls) Console.WriteLine($"{call.Kind} {string.Join('×', call.Shape)} channels-last {call.ChannelsLast}");
/// }
/// </code>
/// </summary>
public sealed class ConvolutionTrace : IDisposable
{
    [ThreadStatic] private static ConvolutionTrace? _current;

    private readonly ConvolutionTrace? _outer;
    private readonly List<ConvolutionCall> _calls = new();
    private bool _disposed;

    private ConvolutionTrace(ConvolutionTrace? outer) => _outer = outer;

    /// <summary>Starts listening on this thread until the trace is disposed (a trace started inside another hides it meanwhile).</summary>
    public static ConvolutionTrace Start() => _current = new ConvolutionTrace(_current);

    /// <summary>The convolutions run since <see cref="Start"/>, in order.</summary>
    public IReadOnlyList<ConvolutionCall> Calls => _calls;

    /// <summary>Stops listening; the calls stay readable.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (ReferenceEquals(_current, this)) _current = _outer;
    }

    /// <summary>Notes a convolution's input where a trace is open on this thread; otherwise nothing.</summary>
    internal static void Record(torch.Tensor input, torch.nn.Module? module, string kind)
    {
        if (_current is not { } trace) return;
        trace._calls.Add(new ConvolutionCall(module, kind, input.shape, input.stride(), input.dtype));
    }
}
