namespace ResNetGen.Generator.Tests.Cifar;

// The CIFAR ResNet-20 of He et al. (2016) with each shortcut option of §3.3 and KellerJordan's third one.
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.ZeroPad)] public partial class ResNet20A { }
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.Projection)] public partial class ResNet20B { }
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.AllProjection)] public partial class ResNet20C { }
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.AvgPoolZeroPad)] public partial class ResNet20AvgPool { }

/// <summary>ResNet-1202 (option A): 1,202 layers, generated, compiled and run like any other.</summary>
[ResNet(Block.Basic, 200, 200, 200, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.ZeroPad)] public partial class ResNet1202 { }

/// <summary>kuangliu/pytorch-cifar's ResNet-18.</summary>
[ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Cifar, NumClasses = 10)] public partial class CifarResNet18 { }

// Probes for the parameter-free shortcuts: with every block's last batch-norm at zero, a block outputs relu(shortcut(x)).
[ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 4, NumClasses = 3, Shortcut = Shortcut.ZeroPad, ZeroInitResidual = true, InputSize = 8)] public partial class ZeroPadProbe { }
[ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 4, NumClasses = 3, Shortcut = Shortcut.AvgPoolZeroPad, ZeroInitResidual = true, InputSize = 8)] public partial class AvgPoolProbe { }

/// <summary>The paper's v1 bottleneck: the stride on the first 1×1 convolution.</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3, StrideAt = StrideAt.Conv1x1)] public partial class ResNet50v1 { }

/// <summary>A segmentation backbone at output stride 8 (torchvision's replace_stride_with_dilation = [False, True, True]).</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3, DilateStages = new[] { false, true, true })] public partial class ResNet50OS8 { }
