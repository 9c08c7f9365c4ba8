using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;

namespace ResNetGen;

/// <summary>What an <see cref="OnnxRuntimeEngine"/> does when the network's weights change after it was made.</summary>
public enum WeightChange
{
    /// <summary>The next call builds the session again from the network's current weights (the default).</summary>
    Rebuild,

    /// <summary>The next call throws, naming the weight that changed: for a server that must never pause to rebuild.</summary>
    Refuse,
}

/// <summary>Settings of a generated network's <c>ToOnnxRuntime</c> engine; every one has a default that serves well on a CPU.</summary>
public sealed record OnnxRuntimeOptions
{
    /// <summary>Threads one call computes with; 0 (the default): ONNX Runtime's choice, one per physical core.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Threads for running independent graph branches in parallel; 0 (the default): ONNX Runtime's choice.</summary>
    public int InterOpThreads { get; init; }

    /// <summary>The ONNX opset the graph is built with (as <c>ExportOnnx</c>'s opset).</summary>
    public int Opset { get; init; } = 17;

    /// <summary>Whether each batch-norm is folded into the convolution before it (as <c>FuseForInference</c>); on by default.</summary>
    public bool Fold { get; init; } = true;

    /// <summary>What happens when the network's weights change after the engine was made: rebuild (default) or refuse.</summary>
    public WeightChange OnWeightChange { get; init; } = WeightChange.Rebuild;

    /// <summary>ONNX Runtime's graph optimisations; all of them by default.</summary>
    public GraphOptimizationLevel Optimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>Anything else on ONNX Runtime's <see cref="SessionOptions"/> (an execution provider, profiling), applied last.</summary>
    public Action<SessionOptions>? Configure { get; init; }

    /// <summary>
    /// Batches of preprocessed inputs ([N, C, H, W], float, as the network's forward takes them; a few hundred pictures in
    /// all) to calibrate an int8 engine on. With them the engine serves a statically quantised graph: the folded graph
    /// with uint8 activations (a scale per tensor from these batches) and int8 weights per output channel, in QDQ form,
    /// which ONNX Runtime runs on its integer kernels; <c>forward</c> and <c>Run</c> still take and return float32.
    /// Read once, while <c>ToOnnxRuntime</c> runs, and not kept: a weight change after that is refused (see
    /// <see cref="OnnxRuntimeEngine.Quantization"/>). Null (the default): the float32 engine.
    /// </summary>
    public IEnumerable<torch.Tensor>? Int8Calibration { get; init; }

    /// <summary>How each activation's range is chosen from the calibration batches: <see cref="CalibrationMethod.Percentile"/> by default.</summary>
    public CalibrationMethod Int8Method { get; init; } = CalibrationMethod.Percentile;

    /// <summary>The percentile <see cref="CalibrationMethod.Percentile"/> keeps at each end (99.999: one value in 100,000 may be clipped), above 90 and at most 100.</summary>
    public double Int8Percentile { get; init; } = 99.999;

    /// <summary>
    /// Whether int8 weights are kept within ±63 instead of ±127; null (the default): only on an x86 CPU without VNNI,
    /// whose u8×s8 multiply-add saturates in int16 (ONNX Runtime's own advice).
    /// </summary>
    public bool? Int8ReduceRange { get; init; }

    /// <summary>Told the number of calibration pictures read so far, after each batch.</summary>
    public IProgress<long>? Int8Progress { get; init; }
}

/// <summary>
/// A generated network served by ONNX Runtime in this process: the network's own graph, folded, built in memory (no
/// file), computing its eval-mode forward. Made by the network's <c>ToOnnxRuntime()</c>. It follows the network: before
/// each call it compares every parameter and buffer with what the session was built from (which tensor, its version
/// counter, dtype and device), and a weight loaded, edited, trained, replaced or converted since then either makes the
/// call build the session again or is refused, as <see cref="OnnxRuntimeOptions.OnWeightChange"/> says. So it never
/// computes with stale weights. Calls may come from several threads at once; dispose it to release the session.
/// <para>
/// Inputs and outputs are in the network's dtype: float32, or float16 for a network converted with <c>half()</c> (then
/// ONNX Runtime computes in float32 between them, from the network's float16 weights widened exactly, and rounds the
/// result to float16: on a CPU faster and closer than float16 arithmetic). A network converted to float64 (or bfloat16)
/// is served in float32. <see cref="Dtype"/> says which.
/// </para>
/// <para>
/// Made with <see cref="OnnxRuntimeOptions.Int8Calibration"/>, it serves the same graph statically quantised (QDQ: uint8
/// activations calibrated on those batches, int8 weights per output channel) on ONNX Runtime's integer kernels, float32
/// in and out; <see cref="Quantization"/> says how, and a weight change after quantising is refused.
/// </para>
/// </summary>
public sealed class OnnxRuntimeEngine : IDisposable
{
    private readonly string _network;
    private readonly string[] _paths;
    private readonly torch.nn.Module[] _modules;
    private readonly Func<int, FoldSet?, OnnxGraphBuilder> _build;
    private readonly OnnxRuntimeOptions _options;
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private InferenceSession? _session;
    private SessionOptions? _sessionOptions;
    private OnnxModel? _model;
    private TensorStamp[] _sources = Array.Empty<TensorStamp>();
    private bool _disposed;
    // An int8 engine's plan and calibrated ranges: its graph is made again from them and the (unchanged) weights to export.
    private (Int8Layout Layout, IReadOnlyDictionary<string, (float Min, float Max, float Low, float High)> Ranges, bool ReduceRange)? _int8;

    /// <summary>
    /// For generated code: <paramref name="build"/> writes the network's graph at an opset, with the folds given (or
    /// none), up to its output; <paramref name="paths"/> and <paramref name="modules"/> are the network's layers, whose
    /// parameters and buffers the engine follows. Builds the session at once, so a bad option fails here.
    /// </summary>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public OnnxRuntimeEngine(string network, string[] paths, torch.nn.Module[] modules, Func<int, FoldSet?, OnnxGraphBuilder> build, OnnxRuntimeOptions? options)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        _paths = paths ?? throw new ArgumentNullException(nameof(paths));
        _modules = modules ?? throw new ArgumentNullException(nameof(modules));
        _build = build ?? throw new ArgumentNullException(nameof(build));
        _options = options ?? new OnnxRuntimeOptions();
        if (paths.Length != modules.Length) throw new ArgumentException($"{paths.Length} paths for {modules.Length} modules", nameof(paths));
        if (_options.IntraOpThreads < 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.IntraOpThreads, "OnnxRuntimeOptions.IntraOpThreads: 0 (ONNX Runtime's choice) or a positive thread count.");
        if (_options.InterOpThreads < 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.InterOpThreads, "OnnxRuntimeOptions.InterOpThreads: 0 (ONNX Runtime's choice) or a positive thread count.");
        if (!Enum.IsDefined(typeof(WeightChange), _options.OnWeightChange))
            throw new ArgumentOutOfRangeException(nameof(options), _options.OnWeightChange, "OnnxRuntimeOptions.OnWeightChange: WeightChange.Rebuild or WeightChange.Refuse.");
        if (_options.Int8Calibration is not null) CheckInt8Options(network, _options);
        _sessionOptions = CreateSessionOptions(_options);
        try
        {
            Build(Stamps());
        }
        catch
        {
            _sessionOptions.Dispose();
            _lock.Dispose();
            throw;
        }
    }

    /// <summary>The network's class name.</summary>
    public string Network => _network;

    /// <summary>The input's channels: inputs are [N, InChannels, H, W], of <see cref="Dtype"/>, on the CPU.</summary>
    public long InChannels => Model.InChannels;

    /// <summary>
    /// The dtype of inputs and outputs, the network's as of the last build: float16 for a network whose parameters and
    /// buffers are all float16, else float32. A network converted since shows at the next call (or refresh).
    /// </summary>
    public torch.ScalarType Dtype => Model.Float16 ? torch.float16 : torch.float32;

    /// <summary>The output's features (classes, or pooled features for a headless network): outputs are [N, OutputFeatures].</summary>
    public long OutputFeatures => Model.OutputFeatures;

    /// <summary>The one input height and width the graph accepts, or null where any size goes.</summary>
    public int? FixedSize => Model.FixedSize;

    /// <summary>The settings it was made with.</summary>
    public OnnxRuntimeOptions Options => _options;

    /// <summary>How many times the session was built: 1 when made, one more per rebuild after a weight change.</summary>
    public int Builds { get; private set; }

    /// <summary>How long the last build took (graph, folds and session).</summary>
    public TimeSpan LastBuildTime { get; private set; }

    /// <summary>Whether the engine serves an int8 graph (made with <see cref="OnnxRuntimeOptions.Int8Calibration"/>).</summary>
    public bool IsQuantized => Quantization is not null;

    /// <summary>
    /// For an int8 engine: what calibration measured (each quantised tensor's range, scale and zero point), which nodes
    /// compute on integers and which ops stay float32; null for a float engine. An int8 engine is quantised once, from
    /// batches it does not keep: a weight changed after that is refused at the next call, whatever
    /// <see cref="OnnxRuntimeOptions.OnWeightChange"/> says — make a new engine with the calibration batches to requantise.
    /// </summary>
    public Int8Quantization? Quantization { get; private set; }

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>Whether a session is held (false once disposed): for tests.</summary>
    internal bool HoldsSession => _session is not null;

    private OnnxModel Model => _model ?? throw Disposed();

    /// <summary>
    /// Runs the network's eval-mode forward on <paramref name="input"/> ([N, C, H, W] of <see cref="Dtype"/> on the CPU, any
    /// layout) and returns a new [N, OutputFeatures] tensor of that dtype the caller owns. The input is not changed or disposed.
    /// </summary>
    public torch.Tensor forward(torch.Tensor input)
    {
        if (input is null) throw new ArgumentNullException(nameof(input));
        var (n, h, w) = CheckShape(input);
        var session = EnterCurrent();
        try
        {
            // The dtype is checked against the session now current: a network converted since the last call was just rebuilt.
            var dtype = Dtype;
            if (input.dtype != dtype)
                throw new ArgumentException(dtype == torch.float16
                    ? $"{_network}'s engine serves a float16 network (its weights are float16), but the input is {input.dtype}. Pass input.to(torch.float16), or convert the network back with to(torch.float32)."
                    : $"{_network}'s engine computes in float32, but the input is {input.dtype}. Pass input.to(torch.float32) (or convert the network with half() "
                      + "to serve float16); the network's own forward computes in other dtypes.", nameof(input));
            var output = torch.empty(new[] { n, Model.OutputFeatures }, dtype);
            if (n == 0) return output;
            try
            {
                using var dense = input.is_contiguous() ? input.alias() : input.contiguous();
                Run(session, TensorBytes.Pointer(dense), n, h, w, TensorBytes.Pointer(output));
                return output;
            }
            catch
            {
                output.Dispose();
                throw;
            }
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>
    /// Runs the network on <paramref name="batchSize"/> pictures of <paramref name="height"/>×<paramref name="width"/> given as
    /// NCHW float32 values (batchSize·C·H·W of them) and writes batchSize·OutputFeatures values into <paramref name="output"/>:
    /// for callers without TorchSharp tensors. For a float32 network (<see cref="Dtype"/>); a float16 one takes <see cref="Half"/> spans.
    /// </summary>
    public void Run(ReadOnlySpan<float> batch, int batchSize, int height, int width, Span<float> output) =>
        RunSpans(batch, batchSize, height, width, output);

    /// <summary>As <see cref="Run(ReadOnlySpan{float}, int, int, int, Span{float})"/>, returning a new array of batchSize·OutputFeatures values.</summary>
    public float[] Run(ReadOnlySpan<float> batch, int batchSize, int height, int width) => RunToArray(batch, batchSize, height, width);

    /// <summary>As <see cref="Run(ReadOnlySpan{float}, int, int, int, Span{float})"/>, for a float16 network (<see cref="Dtype"/>): NCHW float16 values in and out.</summary>
    public void Run(ReadOnlySpan<Half> batch, int batchSize, int height, int width, Span<Half> output) =>
        RunSpans(batch, batchSize, height, width, output);

    /// <summary>As <see cref="Run(ReadOnlySpan{Half}, int, int, int, Span{Half})"/>, returning a new array of batchSize·OutputFeatures values.</summary>
    public Half[] Run(ReadOnlySpan<Half> batch, int batchSize, int height, int width) => RunToArray(batch, batchSize, height, width);

    private T[] RunToArray<T>(ReadOnlySpan<T> batch, int batchSize, int height, int width) where T : unmanaged
    {
        var output = new T[checked(Math.Max(batchSize, 0) * Model.OutputFeatures)];
        RunSpans(batch, batchSize, height, width, output);
        return output;
    }

    private unsafe void RunSpans<T>(ReadOnlySpan<T> batch, int batchSize, int height, int width, Span<T> output) where T : unmanaged
    {
        var half = typeof(T) == typeof(Half);
        CheckSpans(batch.Length, batchSize, height, width, output.Length, half ? "float16" : "float32");
        var session = EnterCurrent();
        try
        {
            if (Model.Float16 != half)
                throw new ArgumentException(Model.Float16
                    ? $"{_network}'s engine serves a float16 network (its weights are float16): pass Half spans, or convert the network back with to(torch.float32)."
                    : $"{_network}'s engine computes in float32: pass float spans (the network is float32; convert it with half() to serve float16).", nameof(batch));
            if (batchSize == 0) return;
            fixed (T* input = batch)
            fixed (T* result = output)
            {
                Run(session, (IntPtr)input, batchSize, height, width, (IntPtr)result);
            }
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>
    /// Builds the session again now if the network's weights changed since the last build (so the next call does not
    /// pause for it); returns whether it did. Throws where <see cref="WeightChange.Refuse"/> is set and they changed.
    /// </summary>
    public bool Refresh()
    {
        _lock.EnterWriteLock();
        try
        {
            if (_disposed) throw Disposed();
            if (Current()) return false;
            RebuildOrRefuse();
            return true;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>Releases the session and its memory; later calls throw <see cref="ObjectDisposedException"/>. The network is not touched.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _lock.EnterWriteLock();
        try
        {
            if (_disposed) return;
            _disposed = true;
            _session?.Dispose();
            _session = null;
            _sessionOptions?.Dispose();
            _sessionOptions = null;
            _model = null;
            _int8 = null;
            _sources = Array.Empty<TensorStamp>();
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    // The session, with the read lock held (the caller releases it), once the weights are those it was built from;
    // otherwise, under the write lock, it is rebuilt (or the call refused) first.
    private InferenceSession EnterCurrent()
    {
        while (true)
        {
            _lock.EnterReadLock();
            var held = false;
            try
            {
                if (_disposed) throw Disposed();
                if (Current())
                {
                    held = true;
                    return _session!;
                }
            }
            finally
            {
                if (!held) _lock.ExitReadLock();
            }
            _lock.EnterWriteLock();
            try
            {
                if (_disposed) throw Disposed();
                if (!Current()) RebuildOrRefuse();
            }
            finally
            {
                _lock.ExitWriteLock();
            }
        }
    }

    private void Run(InferenceSession session, IntPtr input, long n, long h, long w, IntPtr output)
    {
        var model = Model;
        var (type, size) = model.Float16 ? (TensorElementType.Float16, 2) : (TensorElementType.Float, sizeof(float));
        using var inputValue = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type,
            new[] { n, model.InChannels, h, w }, input, n * model.InChannels * h * w * size);
        using var outputValue = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type,
            new[] { n, model.OutputFeatures }, output, n * model.OutputFeatures * size);
        using var runOptions = new RunOptions();
        session.Run(runOptions, new[] { model.InputName }, new[] { inputValue }, new[] { model.OutputName }, new[] { outputValue });
    }

    private (long N, long H, long W) CheckShape(torch.Tensor input)
    {
        var model = Model;
        var method = _network + " engine's forward";
        NetworkInput.Check(input, (int)model.InChannels, method, model.FixedSize);
        if (input.device_type != DeviceType.CPU)
            throw new ArgumentException(
                $"{method} reads tensors on the CPU, but the input is on {input.device}. Pass input.cpu(), or run the network's own forward on that device.", nameof(input));
        return (input.shape[0], input.shape[2], input.shape[3]);
    }

    private void CheckSpans(int values, int batchSize, int height, int width, int output, string dtype)
    {
        var model = Model;
        var method = _network + " engine's Run";
        if (batchSize < 0 || height <= 0 || width <= 0)
            throw new ArgumentOutOfRangeException(batchSize < 0 ? nameof(batchSize) : height <= 0 ? nameof(height) : nameof(width),
                $"{method} needs a batch size of 0 or more and a positive height and width, but got {batchSize} pictures of {height}×{width}.");
        NetworkInput.CheckSize(model.FixedSize, height, width, method);
        var needed = (long)batchSize * model.InChannels * height * width;
        if (values != needed)
            throw new ArgumentException(
                $"{method} was given {values} values for {batchSize} pictures of {model.InChannels}×{height}×{width}, which are {needed} (NCHW {dtype}). Pass exactly those values.", "batch");
        var results = (long)batchSize * model.OutputFeatures;
        if (output < results)
            throw new ArgumentException($"{method} writes {results} values ({batchSize}×{model.OutputFeatures}), but the output holds {output}. Pass a span of at least {results}.", nameof(output));
    }

    // ---- following the network's weights ----

    private bool Current() => TensorStamp.FirstChange(_sources, Stamps()) < 0;

    private void RebuildOrRefuse()
    {
        var now = Stamps();
        // Disposing a network empties its layers' parameter lists and frees their tensors: a change, but not one to build from.
        if (now.Length < _sources.Length && _sources.Any(s => s.Tensor is { IsInvalid: true })) throw NetworkDisposed();
        var changed = TensorStamp.FirstChange(_sources, now);
        if (changed < 0) return;
        if (_options.OnWeightChange == WeightChange.Refuse || IsQuantized)
        {
            var what = changed < _sources.Length && changed < now.Length
                ? $"{Names()[changed]} was {TensorStamp.Describe(_sources[changed], now[changed])}"
                : "its parameters and buffers are not those it was built from";
            if (IsQuantized)
                throw new InvalidOperationException(
                    $"{_network}'s weights changed since its int8 ONNX Runtime engine was quantised ({what}). An int8 engine does not keep its calibration batches, " +
                    "so it cannot requantise: make a new engine with ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = batches }) from the new weights.");
            throw new InvalidOperationException(
                $"{_network}'s weights changed since its ONNX Runtime engine was built ({what}), and the engine was made with OnWeightChange = WeightChange.Refuse. " +
                "Make a new engine with ToOnnxRuntime(), call Refresh() where a pause to rebuild is acceptable, or use WeightChange.Rebuild.");
        }
        Build(now);
    }

    // Every parameter and buffer of the network's layers, in state_dict order: checked before every call, so no key is
    // built here (Names gives them, in the same order, for a refusal's message).
    private TensorStamp[] Stamps()
    {
        var stamps = new List<TensorStamp>();
        try
        {
            foreach (var module in _modules)
            {
                foreach (var (_, parameter) in module.named_parameters(recurse: false)) stamps.Add(Stamp(parameter));
                foreach (var (_, buffer) in module.named_buffers(recurse: false)) stamps.Add(Stamp(buffer));
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException or NullReferenceException)
        {
            throw NetworkDisposed();
        }
        return stamps.ToArray();

        TensorStamp Stamp(torch.Tensor tensor)
        {
            if (tensor.IsInvalid) throw NetworkDisposed();
            return TensorStamp.Of(tensor);
        }
    }

    private string[] Names() => _modules.SelectMany((module, i) =>
        module.named_parameters(recurse: false).Select(p => _paths[i] + "." + p.name)
            .Concat(module.named_buffers(recurse: false).Select(b => _paths[i] + "." + b.name))).ToArray();

    // Builds from the weights the stamps were taken of (taken before the graph: a change while it builds shows at the next call).
    private void Build(TensorStamp[] stamps)
    {
        var clock = Stopwatch.StartNew();
        var model = Graph(IsFloat16(stamps), null);
        InferenceSession session;
        try
        {
            session = new InferenceSession(model.Bytes, _sessionOptions!);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidOperationException($"ONNX Runtime refused {_network}'s graph (opset {model.Opset}): {e.Message.Split('\n')[0]}", e);
        }
        var old = _session;
        _session = session;
        _model = model with { Bytes = Array.Empty<byte>() }; // the session has its own copy
        _sources = stamps;
        old?.Dispose();
        Builds++;
        LastBuildTime = clock.Elapsed;
    }

    // The graph the session is built from, made from the network's current weights. A float16 network's batch-norms are
    // written unfolded: folded here they would be rounded to float16 (the folds keep the weights' dtype, as the network's own
    // fused forward needs); ONNX Runtime folds them itself in float32. An int8 engine's first graph calibrates on the
    // options' batches and keeps its plan and ranges, from which every later one (ExportOnnx, OptimizedOps) is made again.
    private OnnxModel Graph(bool float16, IReadOnlyDictionary<string, string>? metadata)
    {
        using var folds = _options.Fold && !float16 ? new FoldSet() : null;
        var builder = _build(_options.Opset, folds);
        if (_options.Int8Calibration is null) return builder.Build(float16, metadata);
        if (float16)
            throw new ArgumentException($"{_network}'s weights are float16 (half()), and an int8 engine quantises from float32 weights. Convert the network with to(torch.float32) first.", "options");
        if (_int8 is { } kept) return builder.BuildInt8(kept.Layout, kept.Ranges, kept.ReduceRange, metadata).Model;

        var clock = Stopwatch.StartNew();
        var layout = builder.PlanInt8();
        var (ranges, batches, pictures) = Int8Calibrator.Measure(_network, builder.BuildCalibration(layout.Tensors), layout.Tensors, _options.Int8Calibration,
            builder.InChannels, builder.FixedSize, _options, _sessionOptions!);
        var reduce = _options.Int8ReduceRange ?? (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64
                                                 && !CpuCaches.HasInt8DotProduct);
        var (model, report) = builder.BuildInt8(layout, ranges, reduce, metadata);
        _int8 = (layout, ranges, reduce);
        Quantization = new Int8Quantization(_options.Int8Method, _options.Int8Method == CalibrationMethod.Percentile ? _options.Int8Percentile : 100,
            batches, pictures, reduce, report, layout.IntegerNodes.Count, layout.FloatOps, clock.Elapsed);
        return model;
    }

    private static void CheckInt8Options(string network, OnnxRuntimeOptions options)
    {
        var what = $"{network}'s int8 engine";
        if (options.Opset < 13)
            throw new ArgumentOutOfRangeException(nameof(options), options.Opset,
                $"{what} needs ONNX opset 13 or later (per-channel DequantizeLinear), but OnnxRuntimeOptions.Opset is {options.Opset}. Use the default, 17.");
        if (!options.Fold)
            throw new ArgumentException(
                $"{what} quantises the folded graph (each batch-norm inside its convolution, so ONNX Runtime fuses each convolution into its integer kernel); OnnxRuntimeOptions.Fold = false cannot be combined with Int8Calibration.",
                nameof(options));
        if (!Enum.IsDefined(typeof(CalibrationMethod), options.Int8Method))
            throw new ArgumentOutOfRangeException(nameof(options), options.Int8Method, "OnnxRuntimeOptions.Int8Method: CalibrationMethod.Percentile or CalibrationMethod.MinMax.");
        if (!(options.Int8Percentile > 90 && options.Int8Percentile <= 100))
            throw new ArgumentOutOfRangeException(nameof(options), options.Int8Percentile,
                $"OnnxRuntimeOptions.Int8Percentile is the share of values kept at each end, above 90 and at most 100 (default 99.999), but is {options.Int8Percentile}.");
    }

    /// <summary>
    /// Writes the graph this engine serves as an ONNX file (replaced whole, never half-written), to be served elsewhere:
    /// an int8 engine's quantised QDQ graph (its weights, unchanged since it was quantised, and its calibrated scales), or
    /// a float engine's folded graph of the network's current weights; <paramref name="metadata"/> goes into the model's
    /// metadata_props (e.g. class names).
    /// </summary>
    public OnnxExport ExportOnnx(string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        var model = ServedModel(metadata);
        var full = AtomicFile.Write(path, stream => stream.Write(model.Bytes));
        return new OnnxExport(full, model.Opset, model.Nodes, model.Initializers, Array.Empty<string>());
    }

    /// <summary>
    /// The op types of the graph ONNX Runtime runs after its optimisations, with their counts (e.g. <c>QLinearConv</c>
    /// 53 for an int8 ResNet-50, <c>Conv</c> for a float one): what really computes. Builds a second session to read it.
    /// </summary>
    public IReadOnlyDictionary<string, int> OptimizedOps()
    {
        var bytes = ServedModel(null).Bytes;
        var file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"resnetgen-optimized-{Guid.NewGuid():N}.onnx");
        try
        {
            using (var options = CreateSessionOptions(_options))
            {
                options.OptimizedModelFilePath = file;
                options.LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR; // not its warning that the file is for this CPU only
                using var session = new InferenceSession(bytes, options);
            }
            return OnnxGraphSummary.Read(System.IO.File.ReadAllBytes(file)).OpCounts;
        }
        finally
        {
            try { System.IO.File.Delete(file); } catch (System.IO.IOException) { }
        }
    }

    // The model the session serves, made again (with the weights current: a changed one is rebuilt first, or refused as a
    // call would be).
    private OnnxModel ServedModel(IReadOnlyDictionary<string, string>? metadata)
    {
        EnterCurrent();
        try
        {
            return Graph(Model.Float16, metadata);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    // A network whose every floating-point parameter and buffer is float16 (half()) is served in float16.
    private static bool IsFloat16(TensorStamp[] stamps)
    {
        var floating = stamps.Where(s => s.Tensor is not null && torch.is_floating_point(s.Tensor)).ToList();
        return floating.Count > 0 && floating.All(s => s.Dtype == torch.ScalarType.Float16);
    }

    private static SessionOptions CreateSessionOptions(OnnxRuntimeOptions options)
    {
        SessionOptions session;
        try
        {
            session = new SessionOptions();
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or BadImageFormatException)
        {
            throw new InvalidOperationException(NativeLibraryMissing, e);
        }
        try
        {
            session.IntraOpNumThreads = options.IntraOpThreads;
            session.InterOpNumThreads = options.InterOpThreads;
            session.GraphOptimizationLevel = options.Optimization;
            session.ExecutionMode = ExecutionMode.ORT_SEQUENTIAL;
            options.Configure?.Invoke(session);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>The error where ONNX Runtime's native library is not beside the application.</summary>
    internal const string NativeLibraryMissing =
        "ONNX Runtime's native library is not in this application. ResNetGen references only its managed API, so that you choose the build: " +
        "add <PackageReference Include=\"Microsoft.ML.OnnxRuntime\" Version=\"1.31.1\" /> for CPUs (or Microsoft.ML.OnnxRuntime.Gpu for CUDA) to the project.";

    private ObjectDisposedException NetworkDisposed() =>
        new(_network, $"{_network} was disposed after its ONNX Runtime engine was made; the engine follows the network's weights, so it cannot run without them. Dispose the engine with the network.");

    private ObjectDisposedException Disposed() =>
        new(nameof(OnnxRuntimeEngine), $"This ONNX Runtime engine of {_network} was disposed. Make a new one with the network's ToOnnxRuntime().");
}
