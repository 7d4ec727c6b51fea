using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>
/// What the CLI's commands used to compute themselves and now ask <see cref="LinuxGuest"/> for: symbol search and
/// lookup by address, type lookup, a process's page tables, the process tree.
/// </summary>
public sealed class LinuxGuestQueryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-guest-").FullName;
    private readonly SyntheticLinux _linux = new();
    private readonly Vm _vm;

    public LinuxGuestQueryTests()
    {
        string core = Path.Combine(_dir, "linux.core");
        ElfCoreWriter.Write(_linux.Machine, core, _linux.Machine.VmcoreinfoNote);
        _vm = Vm.Open(core);
    }

    public void Dispose()
    {
        _vm.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void SymbolsAreFilteredByGlobOrSubstringInKallsymsOrder()
    {
        IReadOnlyList<SymbolMatch> all = _vm.Linux.FindSymbols();
        Assert.Equal(_linux.SymbolCount, all.Count);
        Assert.All(all, m => Assert.Null(m.Module));

        IReadOnlyList<SymbolMatch> inits = _vm.Linux.FindSymbols(new NamePattern("init_*"));
        Assert.Equal(["init_task", "init_top_pgt"], inits.Select(m => m.Symbol.Name).Order(StringComparer.Ordinal));
        Assert.Equal(inits.Select(m => m.Symbol.Name), all.Select(m => m.Symbol.Name).Where(n => n.StartsWith("init_", StringComparison.Ordinal)));

        // Without wildcards: a substring; "_task" is in init_task and current_task.
        Assert.Equal(["current_task", "init_task"], _vm.Linux.FindSymbols(new NamePattern("_task")).Select(m => m.Symbol.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ModuleSymbolsFollowTheKernelsMarkedWithTheirModule()
    {
        IReadOnlyList<SymbolMatch> found = _vm.Linux.FindSymbols(new NamePattern("mod_*"), modules: true);
        Assert.Equal([("mod_a_init", "mod_a"), ("mod_a_data", "mod_a"), ("mod_b_export", "mod_b")], found.Select(m => (m.Symbol.Name, m.Module!)));
        Assert.Empty(_vm.Linux.FindSymbols(new NamePattern("mod_*"), modules: false));
    }

    [Fact]
    public void AnAddressIsItsSymbolPlusAnOffset()
    {
        SymbolMatch? m = _vm.Linux.SymbolAt(_linux.InitTask + 0x18);
        Assert.NotNull(m);
        Assert.Equal(("init_task", 0x18UL, _linux.InitTask + 0x18), (m.Symbol.Name, m.Offset, m.Address));
        Assert.Null(_vm.Linux.SymbolAt(0xffff_0000_0000_0000UL));
    }

    [Fact]
    public void TypesAreFoundByBareNameOrCSpelling()
    {
        LinuxKernel k = _vm.Linux.Kernel;
        KernelTypeMatch lh = _vm.Linux.FindType("list_head");
        Assert.Equal((k.Types.FindStruct("list_head"), (string?)null, false), (lh.Id, lh.Module, lh.FromFallback));
        Assert.Equal(lh.Id, _vm.Linux.FindType("struct list_head").Id);
        Assert.Equal("u64", k.Types.TypeName(_vm.Linux.FindType("u64").Id));
        Assert.Equal("char *", k.Types.TypeName(_vm.Linux.FindType("char *").Id));

        // A bare name is tried as a struct before a typedef: kuid_t is only a typedef here.
        Assert.Equal(VmState.Linux.Btf.BtfKind.Typedef, BtfKindOf(k, _vm.Linux.FindType("kuid_t").Id));

        var missing = Assert.Throws<VmStateNotFoundException>(() => _vm.Linux.FindType("no_such_type"));
        Assert.Equal((VmStateObjectKind.Type, "no_such_type"), (missing.Kind, missing.Name));
    }

    [Fact]
    public void AModuleTypeNeedsAKernelWithModuleBtf()
    {
        // The synthetic kernel keeps no module BTF list (btf_modules): asking for a module's type says so.
        var e = Assert.Throws<KernelDataException>(() => _vm.Linux.FindType("list_head", module: "e1000"));
        Assert.Contains("btf_modules", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AProcessSpaceIsItsMmPgd()
    {
        AddressSpace space = _vm.Linux.ProcessAddressSpace(1);
        Assert.Equal((PagingMode.Level4, _linux.Root), (space.Mode, space.Cr3));
        Assert.True(space.TryTranslate(0x7ffd0010, out ulong pa));
        Assert.Equal(0x5000010UL, pa);

        Assert.Throws<KernelDataException>(() => _vm.Linux.ProcessAddressSpace(2)); // kthreadd: no user memory
        var e = Assert.Throws<VmStateNotFoundException>(() => _vm.Linux.ProcessAddressSpace(4242));
        Assert.Equal((VmStateObjectKind.Process, "4242"), (e.Kind, e.Name));
    }

    [Fact]
    public void TheProcessTreeHangsChildrenUnderTheirParents()
    {
        IReadOnlyList<ProcessTreeNode> roots = _vm.Linux.ProcessTree();
        Assert.Equal([1, 2], roots.Select(n => n.Process.Pid));
        Assert.Equal([100, 200], roots[0].Children.Select(n => n.Process.Pid));
        Assert.Equal([3], roots[1].Children.Select(n => n.Process.Pid));
    }

    private static VmState.Linux.Btf.BtfKind BtfKindOf(LinuxKernel k, int id) => k.Types.Get(id).Kind;
}
