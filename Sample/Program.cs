using System;
using System.Diagnostics;
using TorchSharp;
using ResNetGen.Sample;

// A first look at generated networks: their compile-time summaries, then a forward pass of each.
torch.manual_seed(0);
Console.WriteLine("ResNetGen sample: networks generated at build time from [ResNet] attributes.");
Console.WriteLine();
Console.WriteLine($"ResNet20 (CIFAR-style, 1×28×28 input): {ResNet20.ParameterCount:N0} parameters, {ResNet20.MultAdds:N0} mult-adds");
Console.WriteLine(ResNet20.Summary);
Console.WriteLine($"ResNet50 (torchvision layout): {ResNet50.ParameterCount:N0} parameters, {ResNet50.MultAdds / 1e9:0.00} G mult-adds at 224×224");
Console.WriteLine();

Run(new ResNet20(), torch.randn(8, 1, 28, 28), "ResNet20, batch 8 of 1×28×28");
Run(new ResNet50(), torch.randn(2, 3, 224, 224), "ResNet50, batch 2 of 3×224×224");

static void Run(torch.nn.Module<torch.Tensor, torch.Tensor> network, torch.Tensor input, string what)
{
    using var _ = network;
    using var __ = input;
    network.eval();
    using var noGrad = torch.no_grad();
    var clock = Stopwatch.StartNew();
    using var logits = network.call(input);
    var elapsed = clock.Elapsed.TotalMilliseconds;
    using var probabilities = torch.nn.functional.softmax(logits, 1);
    var (top, index) = probabilities.max(1);
    using (top) using (index)
        Console.WriteLine($"{what}: output [{string.Join(", ", logits.shape)}] in {elapsed:0} ms; top class of image 0: {index[0].item<long>()} (p = {top[0].item<float>():0.000})");
}
