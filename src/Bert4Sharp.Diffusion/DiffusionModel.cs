namespace Bert4Sharp.Diffusion;

using System.Text.Json;
using System.Text.Json.Serialization;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Diffusion.Data;
using Bert4Sharp.Diffusion.Methods;
using Bert4Sharp.Diffusion.Networks;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>What a model directory's <c>diffusion.json</c> records: enough to rebuild the network and its method.</summary>
public sealed record DiffusionConfig
{
    /// <summary>ddpm, rf or pfgm.</summary>
    [JsonPropertyName("method")] public string Method { get; init; } = "ddpm";
    /// <summary>The training data: mnist, or a toy distribution (8gaussians, moons, checkerboard).</summary>
    [JsonPropertyName("data")] public string Data { get; init; } = "mnist";
    /// <summary>One example's shape: [1, 28, 28] for MNIST, [2] for toys.</summary>
    [JsonPropertyName("shape")] public IReadOnlyList<int> Shape { get; init; } = [1, 28, 28];
    /// <summary>U-Net channels per level (images).</summary>
    [JsonPropertyName("channels")] public IReadOnlyList<int> Channels { get; init; } = [32, 64, 64];
    /// <summary>Groups of the U-Net's group norms.</summary>
    [JsonPropertyName("groups")] public int Groups { get; init; } = 8;
    /// <summary>MLP width (toys).</summary>
    [JsonPropertyName("width")] public int Width { get; init; } = 128;
    /// <summary>MLP hidden layers (toys).</summary>
    [JsonPropertyName("layers")] public int Layers { get; init; } = 3;
    /// <summary>Training steps taken (all rounds).</summary>
    [JsonPropertyName("steps")] public long Steps { get; init; }
    /// <summary>How many reflows made this model (0: the first rectified flow).</summary>
    [JsonPropertyName("reflow")] public int Reflow { get; init; }
    /// <summary>Poisson flow's settings (chosen for the data's dimension and norm at training; null: the CIFAR-10 defaults).</summary>
    [JsonPropertyName("pfgm")] public PoissonFlowOptions? Pfgm { get; init; }

    /// <summary>True for 2-D toy data.</summary>
    [JsonIgnore] public bool IsToy => Shape.Count == 1;
}

/// <summary>
/// A trained generative model: its method, its network and the directory layout (<c>diffusion.json</c> +
/// <c>model.safetensors</c>, the EMA weights when training kept them).
/// </summary>
public sealed class DiffusionModel : IDisposable
{
    /// <summary>The config file's name.</summary>
    public const string ConfigFile = "diffusion.json";
    /// <summary>The weights file's name.</summary>
    public const string WeightsFile = "model.safetensors";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Builds an untrained model from a config.</summary>
    /// <exception cref="ArgumentException">An unknown method or a shape the networks cannot take.</exception>
    public DiffusionModel(DiffusionConfig config)
    {
        Config = config;
        Method = CreateMethod(MethodNames.Parse(config.Method), clipDenoised: !config.IsToy, config.Pfgm);
        if (config.IsToy)
            Network = new TimeMlp(config.Shape[0], config.Width, config.Layers, config.Shape[0] + Method.ExtraOutputs);
        else if (config.Shape.Count == 3 && config.Shape[1] == config.Shape[2])
            Network = new UNet(new UNetOptions
            {
                InputChannels = config.Shape[0], OutputChannels = config.Shape[0] + Method.ExtraOutputs,
                Channels = config.Channels, Groups = config.Groups, ImageSize = config.Shape[1], AttentionResolution = Math.Max(1, config.Shape[1] / 4),
            });
        else throw new ArgumentException($"diffusion models take 2-D points [D] or square images [C, H, H]; got shape [{string.Join(", ", config.Shape)}]");
        Network.eval();
    }

    /// <summary>The config.</summary>
    public DiffusionConfig Config { get; private set; }

    /// <summary>The method (loss and sampler).</summary>
    public GenerativeMethod Method { get; private set; }

    /// <summary>
    /// DDPM only: whether sampling clips the predicted x̂_0 to [−1, 1] (<see cref="DdpmOptions.ClipDenoised"/>); on by
    /// default for images (data in [−1, 1]), off for the unbounded 2-D toys. Setting it on another method is an error.
    /// </summary>
    /// <exception cref="InvalidOperationException">Set on a model that is not DDPM.</exception>
    public bool ClipDenoised
    {
        get => Method is Ddpm d && d.Options.ClipDenoised;
        set => Method = Method is Ddpm d ? new Ddpm(d.Options with { ClipDenoised = value })
            : throw new InvalidOperationException($"clipping the predicted x̂_0 is a DDPM sampling option; this model is {Config.Method}");
    }

    /// <summary>The network.</summary>
    public nn.Module<Tensor, Tensor, Tensor> Network { get; }

    /// <summary>The network as the methods call it.</summary>
    public Tensor Call(Tensor x, Tensor time) => Network.forward(x, time);

    /// <summary>Parameters.</summary>
    public long ParameterCount => Network.parameters().Sum(p => p.numel());

    /// <summary>
    /// The method object for a kind with default options (<paramref name="clipDenoised"/>: DDPM's x̂_0 clipping;
    /// <paramref name="pfgm"/>: Poisson flow's settings, null for the defaults).
    /// </summary>
    public static GenerativeMethod CreateMethod(MethodKind kind, bool clipDenoised = false, PoissonFlowOptions? pfgm = null) => kind switch
    {
        MethodKind.Ddpm => new Ddpm(new DdpmOptions { ClipDenoised = clipDenoised }),
        MethodKind.RectifiedFlow => new RectifiedFlow(),
        _ => new PoissonFlow(pfgm),
    };

    /// <summary>Records progress in the config (steps, reflow rounds).</summary>
    public void Update(Func<DiffusionConfig, DiffusionConfig> change) => Config = change(Config);

    /// <summary>Draws <paramref name="count"/> samples with <paramref name="steps"/> steps, in batches of <paramref name="batch"/>.</summary>
    /// <exception cref="ArgumentException">Bad counts or a sampler the method lacks.</exception>
    public Tensor Sample(int count, int steps, Sampler sampler, int seed, int batch = DefaultBatch)
    {
        var generator = new Generator((ulong)seed);
        return SampleFrom(count, (_, b) => Method.Prior([b, .. Config.Shape.Select(s => (long)s)], generator), steps, sampler, generator, batch);
    }

    /// <summary>The batch of <see cref="Sample"/> and <see cref="SampleFrom"/>.</summary>
    public const int DefaultBatch = 250;

    /// <summary>
    /// Integrates <paramref name="count"/> samples in batches of <paramref name="batch"/>, each batch starting from
    /// <paramref name="noise"/>(first index, size) (disposed after its batch), drawn just before that batch is sampled.
    /// </summary>
    /// <exception cref="ArgumentException">Bad counts or a sampler the method lacks.</exception>
    public Tensor SampleFrom(int count, Func<int, int, Tensor> noise, int steps, Sampler sampler, Generator? generator = null, int batch = DefaultBatch)
    {
        if (count < 1) throw new ArgumentException($"the sample count must be ≥ 1, got {count}");
        if (batch < 1) throw new ArgumentException($"the sampling batch must be ≥ 1, got {batch}");
        Network.eval();
        var parts = new List<Tensor>();
        for (int done = 0; done < count; done += batch)
        {
            using var start = noise(done, Math.Min(batch, count - done));
            parts.Add(Method.SampleFrom(Call, start, steps, sampler, generator));
        }
        var all = torch.cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    /// <summary>Writes <c>model.safetensors</c> then <c>diffusion.json</c> (each atomically).</summary>
    public void Save(string directory)
    {
        var state = Network.state_dict();
        SafetensorsWriter.Write(Path.Combine(directory, WeightsFile), state.Select(kv => TensorSource.From(kv.Key, kv.Value)).ToList());
        AtomicFile.WriteAllText(Path.Combine(directory, ConfigFile), JsonSerializer.Serialize(Config, Json));
    }

    /// <summary>Loads a model directory.</summary>
    /// <exception cref="DirectoryNotFoundException">No such directory.</exception>
    /// <exception cref="FileNotFoundException">No <c>diffusion.json</c> or <c>model.safetensors</c>.</exception>
    /// <exception cref="InvalidDataException">A config that does not parse.</exception>
    /// <exception cref="CheckpointException">Weights that do not fit the network.</exception>
    public static DiffusionModel Load(string directory)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"model directory {directory} does not exist (train one with `b4s diffusion train`)");
        var config = ReadConfig(directory);
        string weights = Path.Combine(directory, WeightsFile);
        if (!File.Exists(weights)) throw new FileNotFoundException($"{directory} has no {WeightsFile}: training did not finish writing the model", weights);
        var model = new DiffusionModel(config);
        LoadWeights(model.Network, weights);
        return model;
    }

    /// <summary>Reads a model directory's <c>diffusion.json</c>.</summary>
    /// <exception cref="FileNotFoundException">No <c>diffusion.json</c>.</exception>
    /// <exception cref="InvalidDataException">A config that does not parse.</exception>
    public static DiffusionConfig ReadConfig(string directory)
    {
        string config = Path.Combine(directory, ConfigFile);
        if (!File.Exists(config)) throw new FileNotFoundException($"{directory} has no {ConfigFile}: not a diffusion model directory (train one with `b4s diffusion train`)", config);
        try { return JsonSerializer.Deserialize<DiffusionConfig>(File.ReadAllBytes(config)) ?? throw new InvalidDataException($"{config} is empty"); }
        catch (JsonException e) { throw new InvalidDataException($"{config} is not valid JSON: {e.Message}", e); }
    }

    /// <summary>Copies every tensor of a module's state from a safetensors file, strictly (all present, shapes equal).</summary>
    /// <exception cref="CheckpointException">A missing tensor or a shape mismatch.</exception>
    public static void LoadWeights(nn.Module module, string path)
    {
        using var ck = Checkpoint.Open(path);
        using var noGrad = torch.no_grad();
        foreach (var (name, t) in module.state_dict())
        {
            if (!ck.TryGetEntry(name, out var entry))
                throw new CheckpointFormatException(path, name, "missing: the file was written for another network (method, data or channels differ)");
            using var saved = ck.ReadTensor(entry);
            if (!saved.shape.SequenceEqual(t.shape))
                throw new CheckpointFormatException(path, name, $"shape [{string.Join(", ", saved.shape)}] does not fit the network's [{string.Join(", ", t.shape)}]");
            t.copy_(saved);
        }
    }

    /// <inheritdoc/>
    public void Dispose() => Network.Dispose();
}
