using ResNetGen;

namespace ResNetGen.Sample;

/// <summary>
/// ResNet-20 in the CIFAR layout of He et al. (2016) — three stages of three basic blocks, 16/32/64 channels — for 28×28
/// grayscale images and 10 classes, with projection shortcuts (the paper's option B) where the shape changes; the paper's
/// CIFAR runs used option A (<c>Shortcut.ZeroPad</c>).
/// </summary>
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, InChannels = 1, InputSize = 28, NumClasses = 10)]
public partial class ResNet20 { }

/// <summary>torchvision's resnet50.</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3)]
public partial class ResNet50 { }

/// <summary>
/// torchvision's resnet18, for fine-tuning (the finetune command): built with the class count of the pictures' folder,
/// it loads torchvision's pretrained weights or any checkpoint of this layout, all but the classifier.
/// </summary>
[ResNet(Block.Basic, 2, 2, 2, 2)]
public partial class ResNet18 { }

/// <summary>timm's resnet50d (ResNet-D, "Bag of Tricks"): deep stem, avg-down shortcuts. Keys as timm's state_dict.</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32, Shortcut = Shortcut.AvgDown)]
public partial class ResNet50d { }

/// <summary>timm's seresnext50_32x4d: ResNeXt-50 32×4d with squeeze-excite in every block. Keys as timm's state_dict.</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4, Attention = Attention.SqueezeExcite)]
public partial class SeResNeXt50_32x4d { }

/// <summary>
/// timm's resnetv2_50x1_bit (Big Transfer, Kolesnikov et al. 2020): pre-activation bottlenecks with group-norm of 32
/// groups, weight-standardised convolutions (ε 1e-8) and the fixed stem. Keys as timm's state_dict.
/// </summary>
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_50x1_Bit { }
