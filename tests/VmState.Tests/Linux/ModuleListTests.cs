using VmState.Linux;

namespace VmState.Tests.Linux;

public class ModuleListTests
{
    [Fact]
    public void ModulesInListOrderWithLayoutSizesAndReferences()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);

        IReadOnlyList<LinuxModule> mods = ModuleList.Read(k);

        Assert.Equal(["mod_a", "mod_b"], mods.Select(m => m.Name));
        Assert.Equal(s.Modules.Select(m => m.Address), mods.Select(m => m.Address));
        Assert.All(mods, m => Assert.Equal("LIVE", m.State));
        Assert.Equal([0xffffffffc0000000UL, 0xffffffffc0010000UL], mods.Select(m => m.Base));
        Assert.All(mods, m => Assert.Equal(0x4000UL, m.Size));
        Assert.Equal([0, 2], mods.Select(m => m.References));
        Assert.Equal([3, 2], mods.Select(m => m.SymbolCount));
    }

    [Fact]
    public void ModuleSymbolsComeFromTheirOwnElfTablesWithoutTheNullSymbol()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        IReadOnlyList<LinuxModule> mods = ModuleList.Read(k);

        for (int i = 0; i < mods.Count; i++)
        {
            Assert.Equal(s.Modules[i].Symbols.Select(x => new KernelSymbol(x.Name, x.Value, x.Type)), ModuleList.Symbols(k, mods[i]));
        }
    }

    [Fact]
    public void AHugeSymbolCountIsRejected()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        LinuxModule m = ModuleList.Read(k)[0];
        s.WriteU32(m.Address + 0x200 + 8, 0x7fffffff);

        Assert.Contains("num_symtab", Assert.Throws<KernelDataException>(() => ModuleList.Symbols(k, m)).Message, StringComparison.Ordinal);
    }
}
