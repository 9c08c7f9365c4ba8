namespace ResNetGen.Benchmarks;

/// <summary>torchvision's resnet50.</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3)]
public partial class ResNet50 { }

/// <summary>The CIFAR ResNet-20 with projection shortcuts (the peer's layout).</summary>
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10)]
public partial class ResNet20 { }

/// <summary>timm's resnetv2_50x1_bit (BiT): group-norm, weight-standardised convolutions, the fixed stem.</summary>
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_50x1_Bit { }

/// <summary>torchvision's resnet18.</summary>
[ResNet(Block.Basic, 2, 2, 2, 2)]
public partial class ResNet18 { }
