using System;

namespace ResNetGen;

/// <summary>The residual block a network is built from.</summary>
public enum Block
{
    /// <summary>Two 3×3 convolutions (ResNet-18/34, the CIFAR ResNets); expansion 1.</summary>
    Basic = 0,

    /// <summary>1×1, 3×3, 1×1 convolutions (ResNet-50 and deeper, ResNeXt, Wide ResNet); expansion 4.</summary>
    Bottleneck = 1,

    /// <summary>
    /// He et al. 2016's pre-activation basic block (timm's <c>PreActBasic</c>, resnetv2.py): norm and ReLU before each
    /// 3×3 convolution, the projection taken from the pre-activated input, a clean identity sum with no ReLU after it; the
    /// network ends in a norm and ReLU before the pool. Keys as timm's: <c>stem.conv</c>, <c>stages.S.blocks.B.norm1</c>,
    /// <c>.conv1</c>, …, <c>.downsample.conv</c>, <c>norm</c>, <c>head.fc</c> (a 1×1 convolution with bias). Expansion 1.
    /// </summary>
    PreActBasic = 2,

    /// <summary>The pre-activation bottleneck (timm's <c>PreActBottleneck</c>): norm and ReLU before each of the 1×1, 3×3, 1×1 convolutions; expansion 4.</summary>
    PreActBottleneck = 3,
}

/// <summary>The layers before the first stage.</summary>
public enum Stem
{
    /// <summary>7×7 stride-2 convolution, batch-norm, ReLU, 3×3 stride-2 max-pool (torchvision).</summary>
    ImageNet = 0,

    /// <summary>3×3 stride-1 convolution, batch-norm, ReLU; no pooling (the CIFAR ResNets).</summary>
    Cifar = 1,

    /// <summary>
    /// timm's <c>stem_type='deep'</c> (ResNet-C/D/S, "Bag of Tricks"): three 3×3 convolutions StemWidth → StemWidth →
    /// 2×StemWidth, the first with stride 2, batch-norm and ReLU between, then <c>bn1</c>, ReLU and the pool.
    /// </summary>
    Deep = 2,

    /// <summary>timm's <c>stem_type='deep_tiered'</c> (ResNet-T): as <see cref="Deep"/> with 3×(StemWidth/4) → StemWidth → 2×StemWidth.</summary>
    DeepTiered = 3,

    /// <summary>
    /// BiT's 'fixed' stem (timm's resnetv2 <c>stem_type='fixed'</c>): the 7×7 stride-2 convolution, a constant padding of
    /// one zero on each side (<c>stem.pad</c>), then a 3×3 stride-2 max-pool without padding (<c>stem.pool</c>), TensorFlow's
    /// SAME padding as BiT was trained with. Only with the pre-activation blocks.
    /// </summary>
    Fixed = 4,
}

/// <summary>The normalisation layers of a pre-activation network.</summary>
public enum Norm
{
    /// <summary>Batch-norm (timm's resnetv2_18/50, He et al. 2016).</summary>
    BatchNorm = 0,

    /// <summary>
    /// Group-norm over <see cref="ResNetAttribute.NormGroups"/> groups of channels, per sample (Wu and He 2018; BiT): the
    /// same in training and eval, no running statistics. Only with the pre-activation blocks.
    /// </summary>
    GroupNorm = 1,
}

/// <summary>What follows the ImageNet-style stems' batch-norm and ReLU.</summary>
public enum StemPool
{
    /// <summary>3×3 stride-2 max-pool (torchvision, timm's default).</summary>
    MaxPool = 0,

    /// <summary>ResNet-RS's <c>replace_stem_pool</c>: a 3×3 stride-2 convolution, batch-norm and ReLU.</summary>
    Conv = 1,
}

/// <summary>Channel attention after each block's last batch-norm, before the residual add (timm's <c>attn_layer</c>).</summary>
public enum Attention
{
    /// <summary>None (torchvision).</summary>
    None = 0,

    /// <summary>
    /// Squeeze-and-excitation (Hu et al. 2018; timm's <c>SEModule</c>): global average, 1×1 convolution to
    /// C × <see cref="ResNetAttribute.AttentionRatio"/> channels (rounded to a multiple of 8), ReLU, 1×1 convolution back,
    /// sigmoid gate on the channels.
    /// </summary>
    SqueezeExcite = 1,

    /// <summary>
    /// Efficient channel attention (Wang et al. 2020; timm's <c>EcaModule</c>): global average, a 1-D convolution over
    /// the channels whose kernel grows with log2(C), sigmoid gate.
    /// </summary>
    EfficientChannel = 2,
}

/// <summary>How a block's input reaches the residual add (He et al. 2016, §3.3).</summary>
public enum Shortcut
{
    /// <summary>B: identity, or a 1×1 convolution and batch-norm where the shape changes (torchvision).</summary>
    Projection = 0,

    /// <summary>A: identity, or a parameter-free strided subsample with zero channels appended.</summary>
    ZeroPad = 1,

    /// <summary>C: a 1×1 convolution and batch-norm in every block.</summary>
    AllProjection = 2,

    /// <summary>A with average pooling: zero channels appended, then 2×2 average pooling where the stride is 2.</summary>
    AvgPoolZeroPad = 3,

    /// <summary>
    /// ResNet-D's <c>avg_down</c> (timm): B, but where a block downsamples, a 2×2 average pool (ceil mode, padding not
    /// counted) before the 1×1 convolution and batch-norm, so the shortcut sees every input pixel.
    /// </summary>
    AvgDown = 4,
}

/// <summary>
/// Anti-aliased downsampling (Zhang 2019; timm's <c>aa_layer</c>): each strided 3×3 convolution of a block runs at stride 1
/// and a low-pass pool takes the stride after its ReLU; the stem's pool changes likewise.
/// </summary>
public enum AntiAlias
{
    /// <summary>None (torchvision).</summary>
    None = 0,

    /// <summary>
    /// A 2×2 average pool at stride 2 (timm's <c>nn.AvgPool2d</c>, the "aa" models): it also replaces the stem's
    /// max-pool, and floors an odd size.
    /// </summary>
    AvgPool = 1,

    /// <summary>
    /// A fixed 3×3 binomial blur ([1, 2, 1]ᵀ[1, 2, 1] / 16, per channel, reflect padding) at stride 2 (timm's
    /// <c>BlurPool2d</c>, the "blur" models); the stem's max-pool runs at stride 1 before it. The filter is not a parameter.
    /// </summary>
    BlurPool = 2,
}

/// <summary>Which convolution of a bottleneck carries the stride.</summary>
public enum StrideAt
{
    /// <summary>The 3×3 convolution (torchvision, "ResNet v1.5").</summary>
    Conv3x3 = 0,

    /// <summary>The first 1×1 convolution (the original paper, "v1").</summary>
    Conv1x1 = 1,
}

/// <summary>
/// Expands the partial class it is put on into a fully unrolled TorchSharp ResNet at build time.
/// <code>[ResNet(Block.Bottleneck, 3, 4, 6, 3)] public partial class ResNet50 { }</code>
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class ResNetAttribute : Attribute
{
    /// <summary>Declares a network of <paramref name="block"/>s, with <paramref name="layers"/>[i] blocks in stage i.</summary>
    public ResNetAttribute(Block block, params int[] layers)
    {
        Block = block;
        Layers = layers;
    }

    /// <summary>The residual block.</summary>
    public Block Block { get; }

    /// <summary>Blocks per stage; the stage count is its length.</summary>
    public int[] Layers { get; }

    /// <summary>Classifier outputs; 0 drops the classifier and forward returns pooled features. Default 1000.</summary>
    public int NumClasses { get; set; } = 1000;

    /// <summary>Input channels. Default 3.</summary>
    public int InChannels { get; set; } = 3;

    /// <summary>Groups of the bottleneck's 3×3 convolution (ResNeXt cardinality). Default 1.</summary>
    public int Groups { get; set; } = 1;

    /// <summary>Width per group of the bottleneck (torchvision's width_per_group; 128 for Wide ResNet). Default 64.</summary>
    public int WidthPerGroup { get; set; } = 64;

    /// <summary>The stem's output channels and the planes of stage 1, doubling per stage. Default 64.</summary>
    public int BaseWidth { get; set; } = 64;

    /// <summary>The stem. Default <see cref="ResNetGen.Stem.ImageNet"/>.</summary>
    public Stem Stem { get; set; } = Stem.ImageNet;

    /// <summary>The shortcut option. Default <see cref="ResNetGen.Shortcut.Projection"/>.</summary>
    public Shortcut Shortcut { get; set; } = Shortcut.Projection;

    /// <summary>Where a bottleneck's stride sits. Default <see cref="ResNetGen.StrideAt.Conv3x3"/>.</summary>
    public StrideAt StrideAt { get; set; } = StrideAt.Conv3x3;

    /// <summary>For stages 2..n, replace the stride with dilation (torchvision's replace_stride_with_dilation).</summary>
    public bool[]? DilateStages { get; set; }

    /// <summary>
    /// Zero-initialise each block's last batch-norm weight (a pre-activation block's last convolution weight), so blocks
    /// start as identities. Default false (torchvision's, and timm's resnetv2's for the pre-activation blocks), or true
    /// (timm's zero_init_last) for a network that uses any of timm's resnet.py options (a deep stem, StemPool.Conv,
    /// Shortcut.AvgDown, Attention, AntiAlias, DropPath); writing it decides either way.
    /// </summary>
    public bool ZeroInitResidual { get; set; }

    /// <summary>Square input size for the static shapes and the summary; 0 means 224 (ImageNet stem) or 32 (CIFAR stem).</summary>
    public int InputSize { get; set; }

    /// <summary>
    /// The deep stems' width (timm's <c>stem_width</c>): they end in 2 × StemWidth channels. Only with
    /// <see cref="ResNetGen.Stem.Deep"/> or <see cref="ResNetGen.Stem.DeepTiered"/>. Default 32.
    /// </summary>
    public int StemWidth { get; set; } = 32;

    /// <summary>What follows the stem's batch-norm and ReLU. Default <see cref="ResNetGen.StemPool.MaxPool"/>.</summary>
    public StemPool StemPool { get; set; } = StemPool.MaxPool;

    /// <summary>Channel attention in every block. Default <see cref="ResNetGen.Attention.None"/>.</summary>
    public Attention Attention { get; set; } = Attention.None;

    /// <summary>
    /// Squeeze-excite's reduction: the squeezed width is C × AttentionRatio, rounded to a multiple of 8 (timm's
    /// <c>rd_ratio</c>). In (0, 1]; default 1/16 (ResNet-RS uses 0.25).
    /// </summary>
    public double AttentionRatio { get; set; } = 1.0 / 16;

    /// <summary>Anti-aliased downsampling in the stem and every strided block. Default <see cref="ResNetGen.AntiAlias.None"/>.</summary>
    public AntiAlias AntiAlias { get; set; } = AntiAlias.None;

    /// <summary>
    /// Stochastic depth (Huang et al. 2016), as timm applies it: in training, each sample's residual branch is dropped
    /// with a rate rising linearly from 0 at the first block to DropPath at the last, survivors scaled by 1 / (1 − rate).
    /// Eval, the fold and the ONNX export are unaffected. In [0, 1); default 0.
    /// </summary>
    public double DropPath { get; set; }

    /// <summary>
    /// The normalisation layers: <see cref="ResNetGen.Norm.BatchNorm"/> (default) or BiT's
    /// <see cref="ResNetGen.Norm.GroupNorm"/>. Group-norm only with <see cref="ResNetGen.Block.PreActBasic"/> and
    /// <see cref="ResNetGen.Block.PreActBottleneck"/>.
    /// </summary>
    public Norm Norm { get; set; } = Norm.BatchNorm;

    /// <summary>Group-norm's number of groups; it must divide every normalised layer's channels. Only with <see cref="ResNetGen.Norm.GroupNorm"/>. Default 32.</summary>
    public int NormGroups { get; set; } = 32;

    /// <summary>
    /// Weight-standardised convolutions (Qiao et al. 2019; timm's <c>StdConv2d</c>, BiT): each convolution's weight is
    /// standardised per output channel to zero mean and unit variance (biased, plus <see cref="WeightStandardizationEps"/>)
    /// every time it is used; the classifier is not. <c>FuseForInference</c> and the ONNX export standardise once. Only with
    /// the pre-activation blocks. Default false.
    /// </summary>
    public bool WeightStandardization { get; set; }

    /// <summary>The ε added to the weight's variance by <see cref="WeightStandardization"/>: timm's default 1e-6; BiT's models use 1e-8. In (0, 0.1].</summary>
    public double WeightStandardizationEps { get; set; } = 1e-6;
}
