namespace VmState.Tests.Architecture;

/// <summary>
/// A layer: namespaces side by side, which may use each other's types only within the same namespace (so siblings
/// such as the four formats stay independent), and may use every layer below.
/// </summary>
/// <param name="Name">What the layer is, for messages.</param>
/// <param name="Namespaces">Its namespaces; <see cref="LayerOrder.ErrorRoot"/> and <see cref="LayerOrder.FrontDoor"/>
/// stand for the two parts of the root namespace.</param>
public sealed record Layer(string Name, params string[] Namespaces);

/// <summary>
/// The layer order of VmState.Core, bottom first (docs/ARCHITECTURE.md, "Layers", shows the same order), and the
/// check that a set of type references goes only downwards.
/// </summary>
/// <remarks>
/// The root namespace <c>VmState</c> holds two layers: the exception root every layer throws (at the bottom) and
/// the front door that uses every layer (at the top). Its types are told apart by name: the error types are listed
/// in <see cref="ErrorTypes"/>, every other root type is front door. A new root type that lower layers use must be
/// added to that list; until then it counts as front door and every use from below is reported.
/// </remarks>
public static class LayerOrder
{
    /// <summary>Stands for the error types of the root namespace.</summary>
    public const string ErrorRoot = "VmState (error root)";

    /// <summary>Stands for the other types of the root namespace.</summary>
    public const string FrontDoor = "VmState (front door)";

    /// <summary>The root namespace's types that form the error root (docs/ARCHITECTURE.md, "One exception root").</summary>
    public static readonly IReadOnlySet<string> ErrorTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        "VmState.VmStateException",
        "VmState.VmStateNotFoundException",
        "VmState.VmStateObjectKind",
        "VmState.InvalidEditException",
        "VmState.LiveVmGoneException",
    };

    /// <summary>The layers of VmState.Core, bottom first.</summary>
    public static readonly IReadOnlyList<Layer> Layers =
    [
        new("errors", ErrorRoot),
        new("I/O", "VmState.IO"),
        new("list views", "VmState.Views"),
        new("memory", "VmState.Memory"),
        new("architecture", "VmState.Arch"),
        new("address spaces", "VmState.Arch.X86", "VmState.Arch.Arm64"),
        new("machine model", "VmState.Machine"),
        new("format limits", "VmState.Formats"),
        new("device knowledge", "VmState.Formats.Migration.Devices"),
        new("formats", "VmState.Formats.Migration", "VmState.Formats.Qcow2", "VmState.Formats.Elf", "VmState.Formats.Raw"),
        new("loading", "VmState.Snapshots"),
        new("live", "VmState.Live"),
        new("BTF", "VmState.Linux.Btf"),
        new("OS", "VmState.Linux"),
        new("editing and export", "VmState.Editing", "VmState.Export"),
        new("GDB server", "VmState.Gdb"),
        new("events", "VmState.Events"),
        new("history", "VmState.History"),
        new("record/replay and fork", "VmState.Replay", "VmState.Fork"),
        new("front door", FrontDoor),
        new("filesystem view", "VmState.Mount"),
    ];

    /// <summary>The layer group of a type: <see cref="ErrorRoot"/> or <see cref="FrontDoor"/> for the root namespace.</summary>
    public static string GroupOf(string typeName, string ns)
    {
        if (ns != "VmState")
        {
            return ns;
        }

        int nested = typeName.IndexOf('+', StringComparison.Ordinal);
        string outer = nested < 0 ? typeName : typeName[..nested];
        return ErrorTypes.Contains(outer) ? ErrorRoot : FrontDoor;
    }

    /// <summary>True for VmState's own namespaces (not compiler-generated helpers such as &lt;PrivateImplementationDetails&gt;).</summary>
    public static bool IsVmState(string ns) => ns == "VmState" || ns.StartsWith("VmState.", StringComparison.Ordinal);

    /// <summary>
    /// Every reference in <paramref name="references"/> that goes against <paramref name="layers"/>: upwards, sideways
    /// between two namespaces of one layer, or from or to a namespace that has no layer. One line per pair of types,
    /// "from type (namespace) → to type (namespace): why, seen in …".
    /// </summary>
    public static IReadOnlyList<string> Violations(IEnumerable<TypeReference> references, IReadOnlyList<Layer> layers)
    {
        var rank = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < layers.Count; i++)
        {
            foreach (string ns in layers[i].Namespaces)
            {
                rank.Add(ns, i);
            }
        }

        var found = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (TypeReference r in references)
        {
            if (!IsVmState(r.FromNamespace) || !IsVmState(r.ToNamespace))
            {
                continue;
            }

            string from = GroupOf(r.From, r.FromNamespace);
            string to = GroupOf(r.To, r.ToNamespace);
            if (from == to)
            {
                continue;
            }

            string? why;
            if (!rank.TryGetValue(from, out int f))
            {
                why = $"{from} has no layer";
            }
            else if (!rank.TryGetValue(to, out int t))
            {
                why = $"{to} has no layer";
            }
            else if (t > f)
            {
                why = $"upwards, from layer \"{layers[f].Name}\" to layer \"{layers[t].Name}\"";
            }
            else if (t == f)
            {
                why = $"sideways, between two namespaces of layer \"{layers[f].Name}\"";
            }
            else
            {
                why = null;
            }

            if (why is not null)
            {
                found.TryAdd($"{r.From} ({from}) -> {r.To} ({to})", $"{why}; seen in {r.How}");
            }
        }

        return found.Select(kv => $"{kv.Key}: {kv.Value}").ToList();
    }
}
