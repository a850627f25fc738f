namespace Bert4Sharp.Checkpoints.Onnx;

/// <summary>One graph node, reduced to what naming needs.</summary>
internal sealed record OnnxNode(string OpType, string[] Inputs, string[] Outputs);

/// <summary>
/// Recovers parameter names that <c>torch.onnx.export</c> drops. PyTorch keeps the names of most
/// initializers (<c>encoder.layer.0.attention.output.LayerNorm.weight</c>), but a <c>nn.Linear</c> becomes
/// <c>MatMul(x, W)</c> + <c>Add(b, ·)</c> with <c>W</c> pre-transposed to [in, out] under a made-up name
/// (<c>onnx::MatMul_1234</c>, or a bare number such as <c>927</c> in older exports). The rule:
/// <list type="number">
/// <item>the initializer's name is anonymous: it starts with <c>onnx::</c> or is all digits;</item>
/// <item>it is 2-D, [in, out], and every node that reads it is a <c>MatMul</c> taking it as input B;</item>
/// <item>each such MatMul's output is read by exactly one node, an <c>Add</c> whose other input is an
/// initializer named <c>X.bias</c> of shape [out];</item>
/// <item>all uses agree on <c>X</c>, no initializer is already named <c>X.weight</c>, and no other
/// anonymous weight claims it.</item>
/// </list>
/// Then the weight is exposed as <c>X.weight</c> with shape [out, in], as <c>nn.Linear</c> holds it.
/// Anything else keeps its stored name (strict loading then reports it).
/// </summary>
internal static class OnnxWeightNames
{
    /// <summary>True for names an exporter made up rather than took from the model.</summary>
    public static bool IsAnonymous(string name) =>
        name.StartsWith("onnx::", StringComparison.Ordinal) || (name.Length > 0 && name.All(char.IsAsciiDigit));

    /// <summary>Stored name → recovered <c>X.weight</c> for every initializer the rule names.</summary>
    public static Dictionary<string, string> Recover(IReadOnlyDictionary<string, IReadOnlyList<long>> initializerShapes, IReadOnlyList<OnnxNode> nodes)
    {
        var readers = new Dictionary<string, List<(OnnxNode Node, int Slot)>>(StringComparer.Ordinal);
        foreach (var n in nodes)
            for (int i = 0; i < n.Inputs.Length; i++)
            {
                if (n.Inputs[i].Length == 0) continue;   // an omitted optional input
                if (!readers.TryGetValue(n.Inputs[i], out var list)) readers[n.Inputs[i]] = list = [];
                list.Add((n, i));
            }

        var claims = new Dictionary<string, string>(StringComparer.Ordinal);   // stored → X.weight
        foreach (var (stored, shape) in initializerShapes)
        {
            if (!IsAnonymous(stored) || shape.Count != 2 || !readers.TryGetValue(stored, out var uses)) continue;
            string? name = null;
            bool ok = true;
            foreach (var (node, slot) in uses)
            {
                string? n = node.OpType == "MatMul" && slot == 1 && node.Inputs.Length == 2 && node.Outputs.Length >= 1
                    ? BiasOwner(node.Outputs[0], shape[1], readers, initializerShapes) : null;
                if (n is null || (name is not null && name != n)) { ok = false; break; }
                name = n;
            }
            if (ok && name is not null && !initializerShapes.ContainsKey(name)) claims[stored] = name;
        }
        // A name claimed twice names neither.
        var twice = claims.GroupBy(kv => kv.Value, StringComparer.Ordinal).Where(g => g.Count() > 1).SelectMany(g => g.Select(kv => kv.Key)).ToList();
        foreach (var s in twice) claims.Remove(s);
        return claims;
    }

    // The MatMul output must feed exactly one Add whose other operand is a named [out] bias "X.bias"; returns "X.weight".
    static string? BiasOwner(string matmulOutput, long outFeatures, Dictionary<string, List<(OnnxNode Node, int Slot)>> readers,
        IReadOnlyDictionary<string, IReadOnlyList<long>> initializerShapes)
    {
        if (!readers.TryGetValue(matmulOutput, out var next) || next.Count != 1) return null;
        var (add, slot) = next[0];
        if (add.OpType != "Add" || add.Inputs.Length != 2) return null;
        string bias = add.Inputs[1 - slot];
        if (!bias.EndsWith(".bias", StringComparison.Ordinal) || bias.Length == ".bias".Length || IsAnonymous(bias)) return null;
        if (!initializerShapes.TryGetValue(bias, out var bshape) || bshape.Count != 1 || bshape[0] != outFeatures) return null;
        return bias[..^".bias".Length] + ".weight";
    }
}
