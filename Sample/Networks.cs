using ResNetGen;

namespace ResNetGen.Sample;

/// <summary>The CIFAR ResNet-20 of He et al. (2016), for 28×28 grayscale images and 10 classes.</summary>
[ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, InChannels = 1, InputSize = 28, NumClasses = 10)]
public partial class ResNet20 { }

/// <summary>torchvision's resnet50.</summary>
[ResNet(Block.Bottleneck, 3, 4, 6, 3)]
public partial class ResNet50 { }
