namespace VmState.Tests.Architecture;

/// <summary>
/// The layers of VmState.Core (<see cref="LayerOrder"/>, docs/ARCHITECTURE.md "Layers") hold in the compiled
/// assembly: every type reference read from its metadata and IL goes to the same namespace or a layer below, and
/// the namespaces form no cycle. The checks are themselves tested on made-up references, so they cannot pass by
/// seeing nothing.
/// </summary>
public sealed class LayerTests
{
    private static readonly Lazy<IReadOnlyList<TypeReference>> s_core = new(() => TypeReferenceGraph.Read(typeof(Vm).Assembly.Location));

    private static TypeReference Ref(string from, string to, string how = "test")
    {
        static string Ns(string type) => type[..type.LastIndexOf('.')];
        return new TypeReference(from, Ns(from.Split('+')[0]), to, Ns(to.Split('+')[0]), how);
    }

    [Fact]
    public void EveryReferenceOfTheCoreAssemblyGoesToItsOwnNamespaceOrALayerBelow()
    {
        IReadOnlyList<string> violations = LayerOrder.Violations(s_core.Value, LayerOrder.Layers);
        Assert.True(violations.Count == 0, $"{violations.Count} references against the layer order:\n{string.Join("\n", violations)}");
    }

    [Fact]
    public void TheGraphSeesSignaturesBaseTypesAndMethodBodies()
    {
        IReadOnlyList<TypeReference> refs = s_core.Value;
        Assert.True(refs.Count > 5000, $"only {refs.Count} references read");

        // A base type, a field, a signature, and a type named only inside a method body (Vm.Open calls SnapshotLoader).
        Assert.Contains(refs, r => r.From == "VmState.IO.VmStateFormatException" && r.To == "VmState.VmStateException" && r.How == "base type");
        Assert.Contains(refs, r => r.From == "VmState.Machine.MachineState" && r.To == "VmState.Machine.MachineOrigin" && r.How.StartsWith("field ", StringComparison.Ordinal));
        Assert.Contains(refs, r => r.From == "VmState.Snapshots.SnapshotLoader" && r.To == "VmState.Machine.MachineState" && r.How.StartsWith("signature of ", StringComparison.Ordinal));
        Assert.Contains(refs, r => r.From == "VmState.Vm" && r.To == "VmState.Snapshots.SnapshotLoader" && r.How.StartsWith("code of ", StringComparison.Ordinal));

        // Code in lambdas and async methods is compiled into nested types; it counts as the enclosing type's.
        Assert.Contains(refs, r => r.From.StartsWith("VmState.Vm+", StringComparison.Ordinal) && r.To == "VmState.Live.LiveMachine");
    }

    [Fact]
    public void EveryNamespaceOfTheCoreAssemblyHasALayer()
    {
        var placed = LayerOrder.Layers.SelectMany(l => l.Namespaces).ToHashSet(StringComparer.Ordinal);
        string[] namespaces = typeof(Vm).Assembly.GetTypes()
            .Select(t => LayerOrder.GroupOf(t.FullName!, t.Namespace ?? string.Empty))
            .Where(n => LayerOrder.IsVmState(n) || n == LayerOrder.ErrorRoot || n == LayerOrder.FrontDoor)
            .Distinct()
            .ToArray();
        Assert.Contains(LayerOrder.ErrorRoot, namespaces);
        Assert.Contains(LayerOrder.FrontDoor, namespaces);
        Assert.All(namespaces, n => Assert.True(placed.Contains(n), $"namespace {n} has no layer in LayerOrder.Layers"));

        // Each listed error type exists, so the list cannot go stale silently.
        Assert.All(LayerOrder.ErrorTypes, t => Assert.NotNull(typeof(Vm).Assembly.GetType(t)));
    }

    [Fact]
    public void TheNamespacesOfTheCoreAssemblyFormNoCycle()
    {
        IReadOnlyList<string> cycles = NamespaceCycles.Find(s_core.Value);
        Assert.True(cycles.Count == 0, $"namespace cycles:\n{string.Join("\n", cycles)}");
    }

    [Fact]
    public void TheCheckReportsUpwardSidewaysAndUnplacedReferencesAndPassesDownwardOnes()
    {
        TypeReference[] refs =
        [
            Ref("VmState.Machine.MachineState", "VmState.Formats.Migration.MigrationStream", "field Stream"),     // up
            Ref("VmState.Formats.Elf.ElfCoreReader", "VmState.Formats.Migration.ReaderLimits"),                   // sideways
            Ref("VmState.Nowhere.Thing", "VmState.IO.FileSource"),                                               // no layer
            Ref("VmState.IO.OutputFile+<>c", "VmState.Vm"),                                                      // up, nested
            Ref("VmState.Linux.LinuxKernel", "VmState.VmStateException"),                                        // down to the error root
            Ref("VmState.Gdb.GdbRemoteServer", "VmState.Machine.MachineState"),                                  // down
            Ref("VmState.Vm", "VmState.Live.LiveMachine"),                                                       // front door down
            Ref("VmState.Formats.Elf.ElfCoreReader", "VmState.Formats.Elf.ElfNote"),                             // same namespace
            Ref("VmState.Machine.MachineState", "<PrivateImplementationDetails>.Data"),                          // not VmState's
        ];

        IReadOnlyList<string> v = LayerOrder.Violations(refs, LayerOrder.Layers);

        Assert.Equal(4, v.Count);
        Assert.Contains(v, x => x.StartsWith("VmState.Machine.MachineState (VmState.Machine) -> VmState.Formats.Migration.MigrationStream (VmState.Formats.Migration): upwards", StringComparison.Ordinal) && x.EndsWith("seen in field Stream", StringComparison.Ordinal));
        Assert.Contains(v, x => x.StartsWith("VmState.Formats.Elf.ElfCoreReader (VmState.Formats.Elf) -> VmState.Formats.Migration.ReaderLimits (VmState.Formats.Migration): sideways", StringComparison.Ordinal));
        Assert.Contains(v, x => x.StartsWith("VmState.Nowhere.Thing (VmState.Nowhere) -> VmState.IO.FileSource (VmState.IO): VmState.Nowhere has no layer", StringComparison.Ordinal));
        Assert.Contains(v, x => x.StartsWith($"VmState.IO.OutputFile+<>c (VmState.IO) -> VmState.Vm ({LayerOrder.FrontDoor}): upwards", StringComparison.Ordinal));
    }

    [Fact]
    public void TheCycleCheckFindsACycleThroughThreeNamespaces()
    {
        TypeReference[] refs =
        [
            Ref("VmState.Machine.MachineState", "VmState.Formats.Migration.MigrationStream"),
            Ref("VmState.Formats.Migration.MigrationStream", "VmState.Snapshots.SnapshotLoader"),
            Ref("VmState.Snapshots.SnapshotLoader", "VmState.Machine.MachineState"),
            Ref("VmState.Linux.LinuxKernel", "VmState.Machine.MachineState"),
        ];

        string cycle = Assert.Single(NamespaceCycles.Find(refs));
        Assert.Equal("VmState.Formats.Migration, VmState.Machine, VmState.Snapshots", cycle);
        Assert.Empty(NamespaceCycles.Find(refs.Skip(1)));
    }
}
