using System;
using System.Collections.Generic;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ResNetGen.Benchmarks.Peers;

// The peer: a ResNet written the way TorchSharp's own examples write one today — block modules with
// RegisterComponents, Sequential stages built in loops, functional.relu, and a shortcut added out of place.
// It has torchvision's state_dict keys, so it runs exactly the generated network's weights.

public sealed class PeerBasicBlock : Module<Tensor, Tensor>
{
    public const int Expansion = 1;
    private readonly Conv2d conv1, conv2;
    private readonly BatchNorm2d bn1, bn2;
    private readonly Module<Tensor, Tensor>? downsample;

    public PeerBasicBlock(string name, long inPlanes, long planes, long stride) : base(name)
    {
        conv1 = Conv2d(inPlanes, planes, 3, stride: stride, padding: 1, bias: false);
        bn1 = BatchNorm2d(planes);
        conv2 = Conv2d(planes, planes, 3, stride: 1, padding: 1, bias: false);
        bn2 = BatchNorm2d(planes);
        if (stride != 1 || inPlanes != planes) downsample = Sequential(Conv2d(inPlanes, planes, 1, stride: stride, bias: false), BatchNorm2d(planes));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var output = functional.relu(bn1.forward(conv1.forward(x)));
        output = bn2.forward(conv2.forward(output));
        var identity = downsample is null ? x : downsample.forward(x);
        return functional.relu(output + identity);
    }
}

public sealed class PeerBottleneck : Module<Tensor, Tensor>
{
    public const int Expansion = 4;
    private readonly Conv2d conv1, conv2, conv3;
    private readonly BatchNorm2d bn1, bn2, bn3;
    private readonly Module<Tensor, Tensor>? downsample;

    public PeerBottleneck(string name, long inPlanes, long planes, long stride) : base(name)
    {
        conv1 = Conv2d(inPlanes, planes, 1, bias: false);
        bn1 = BatchNorm2d(planes);
        conv2 = Conv2d(planes, planes, 3, stride: stride, padding: 1, bias: false);
        bn2 = BatchNorm2d(planes);
        conv3 = Conv2d(planes, planes * Expansion, 1, bias: false);
        bn3 = BatchNorm2d(planes * Expansion);
        if (stride != 1 || inPlanes != planes * Expansion)
            downsample = Sequential(Conv2d(inPlanes, planes * Expansion, 1, stride: stride, bias: false), BatchNorm2d(planes * Expansion));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var output = functional.relu(bn1.forward(conv1.forward(x)));
        output = functional.relu(bn2.forward(conv2.forward(output)));
        output = bn3.forward(conv3.forward(output));
        var identity = downsample is null ? x : downsample.forward(x);
        return functional.relu(output + identity);
    }
}

public sealed class PeerResNet : Module<Tensor, Tensor>
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Module<Tensor, Tensor>? maxpool;
    private readonly Sequential layer1, layer2, layer3;
    private readonly Sequential? layer4;
    private readonly Linear fc;

    /// <summary>torchvision's ResNet-50: bottleneck blocks 3-4-6-3, ImageNet stem.</summary>
    public static PeerResNet ResNet50(int classes = 1000) => new(true, new[] { 3, 4, 6, 3 }, 64, true, classes);

    /// <summary>The CIFAR ResNet-20 with projection shortcuts: basic blocks 3-3-3, 16 base width, 3×3 stem.</summary>
    public static PeerResNet ResNet20(int classes = 10) => new(false, new[] { 3, 3, 3 }, 16, false, classes);

    private PeerResNet(bool bottleneck, int[] layers, int width, bool imagenetStem, int classes) : base("PeerResNet")
    {
        conv1 = imagenetStem ? Conv2d(3, width, 7, stride: 2, padding: 3, bias: false) : Conv2d(3, width, 3, stride: 1, padding: 1, bias: false);
        bn1 = BatchNorm2d(width);
        if (imagenetStem) maxpool = MaxPool2d(3, 2, 1);
        long inPlanes = width;
        var stages = new List<Sequential>();
        for (var i = 0; i < layers.Length; i++)
        {
            var planes = width << i;
            var blocks = new List<(string, Module<Tensor, Tensor>)>();
            for (var b = 0; b < layers[i]; b++)
            {
                var stride = b == 0 && i > 0 ? 2 : 1;
                blocks.Add((b.ToString(), bottleneck
                    ? new PeerBottleneck("Bottleneck", inPlanes, planes, stride)
                    : new PeerBasicBlock("BasicBlock", inPlanes, planes, stride)));
                inPlanes = planes * (bottleneck ? PeerBottleneck.Expansion : PeerBasicBlock.Expansion);
            }
            stages.Add(Sequential(blocks));
        }
        layer1 = stages[0];
        layer2 = stages[1];
        layer3 = stages[2];
        layer4 = stages.Count > 3 ? stages[3] : null;
        fc = Linear(inPlanes, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        var x = functional.relu(bn1.forward(conv1.forward(input)));
        if (maxpool is not null) x = maxpool.forward(x);
        x = layer3.forward(layer2.forward(layer1.forward(x)));
        if (layer4 is not null) x = layer4.forward(x);
        x = functional.adaptive_avg_pool2d(x, 1).flatten(1);
        return fc.forward(x);
    }
}
