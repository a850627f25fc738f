namespace Bert4Sharp.Tests.Diffusion;

/// <summary><c>b4s diffusion</c> as a process: a few-step training, sampling to PNG, evaluation and the errors.</summary>
public sealed class DiffusionCliTests
{
    [Fact]
    public void Train_sample_and_evaluate_a_toy_flow_from_the_command_line()
    {
        string root = Directory.CreateTempSubdirectory("b4s-diffusion-cli-").FullName;
        try
        {
            string model = Path.Combine(root, "rf");
            var (code, stdout, stderr) = CliTests.B4s("diffusion", "train", "--method", "rf", "--data", "8gaussians", "--max-steps", "30", "--batch-size", "64", "--output", model, "--threads", "1");
            Assert.True(code == 0, stderr + stdout);
            Assert.Contains("reached 30 steps", stdout);
            Assert.True(File.Exists(Path.Combine(model, "checkpoint.safetensors")), "the trainer's checkpoint");

            (code, _, stderr) = CliTests.B4s("diffusion", "train", "--method", "rf", "--data", "8gaussians", "--max-steps", "30", "--output", model);
            Assert.Equal(1, code);
            Assert.Contains("already holds a training run", stderr);

            string png = Path.Combine(root, "points.png");
            (code, stdout, stderr) = CliTests.B4s("diffusion", "sample", "--model", model, "--steps", "4", "--sampler", "heun", "--count", "100", "--output", png);
            Assert.True(code == 0, stderr);
            Assert.Equal(0x89, File.ReadAllBytes(png)[0]);

            (code, stdout, stderr) = CliTests.B4s("diffusion", "evaluate", "--model", model, "--steps", "2,1", "--count", "64", "--straightness-steps", "8");
            Assert.True(code == 0, stderr);
            Assert.Contains("straightness S", stdout);
            Assert.Contains("rf euler 1 steps (1 NFE, 64 samples", stdout);
            Assert.Contains("exact W2 to the target", stdout);

            (code, _, stderr) = CliTests.B4s("diffusion", "sample", "--model", model, "--steps", "0", "--output", png);
            Assert.Equal((1, true), (code, stderr.Contains("--steps must be ≥ 1")));
            (code, _, stderr) = CliTests.B4s("diffusion", "sample", "--model", model, "--sampler", "ddim", "--output", png);
            Assert.Equal((1, true), (code, stderr.Contains("rf has no ddim sampler")));
            (code, _, stderr) = CliTests.B4s("diffusion", "train", "--method", "gan", "--data", "moons", "--max-steps", "1", "--output", Path.Combine(root, "g"));
            Assert.Equal((1, true), (code, stderr.Contains("unknown diffusion method 'gan'")));
            (code, _, stderr) = CliTests.B4s("diffusion", "train", "--method", "ddpm", "--data-dir", Path.Combine(root, "no-mnist"), "--max-steps", "1", "--output", Path.Combine(root, "m"));
            Assert.Equal((1, true), (code, stderr.Contains("MNIST directory") && stderr.Contains("does not exist")));
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void A_few_mnist_steps_train_and_sample_a_grid()
    {
        string mnist = TestPaths.SharedOrSkip(Path.Combine("data", "mnist"));
        string root = Directory.CreateTempSubdirectory("b4s-diffusion-mnist-cli-").FullName;
        try
        {
            string model = Path.Combine(root, "ddpm");
            var (code, stdout, stderr) = CliTests.B4s("diffusion", "train", "--method", "ddpm", "--data-dir", mnist, "--max-steps", "3", "--batch-size", "8",
                "--channels", "8,16,16", "--output", model, "--threads", "1");
            Assert.True(code == 0, stderr + stdout);
            Assert.Contains("training on 9000, 1000 held out", stdout);
            string png = Path.Combine(root, "grid.png");
            (code, _, stderr) = CliTests.B4s("diffusion", "sample", "--model", model, "--steps", "3", "--sampler", "ddim", "--count", "16", "--output", png);
            Assert.True(code == 0, stderr);
            Assert.True(new FileInfo(png).Length > 100);
        }
        finally { Directory.Delete(root, true); }
    }
}
