using System.Buffers.Binary;
using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>The module view: the <c>modules</c> list and each module's own symbol table (<c>struct mod_kallsyms</c>).</summary>
public static class ModuleList
{
    /// <summary>Size of an Elf64_Sym (System V ABI): st_name, st_info, st_other, st_shndx, st_value, st_size.</summary>
    private const int ElfSymSize = 24;

    /// <summary>More symbols than any module has (the largest in-tree modules have tens of thousands).</summary>
    private const uint MaxModuleSymbols = 1 << 20;

    /// <summary>KSYM_NAME_LEN (Linux 6.1).</summary>
    private const int MaxName = 512;

    /// <summary>The loaded modules in list order (newest first, the order of /proc/modules).</summary>
    /// <exception cref="KernelDataException">A corrupt list or an unreadable module.</exception>
    public static IReadOnlyList<LinuxModule> Read(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        int moduleType = kernel.Types.FindType("struct module");
        bool layouts = kernel.Types.FindMember(moduleType, "core_layout") is not null;
        var list = new List<LinuxModule>();
        foreach (KernelObject m in kernel.ListForEachEntry(kernel.Object("modules"), "struct module", "list"))
        {
            string name = m.Member("name").ReadString();
            KernelObject state = m.Member("state");
            ulong baseAddress;
            ulong size;
            if (layouts)
            {
                // ≤6.3: struct module_layout core_layout, init_layout (kernel/module/main.c).
                baseAddress = m.Member("core_layout.base").ToUInt64();
                size = m.Member("core_layout.size").ToUInt64() + m.Member("init_layout.size").ToUInt64();
            }
            else
            {
                // 6.4+: struct module_memory mem[MOD_MEM_NUM_TYPES], MOD_TEXT first.
                KernelObject mem = m.Member("mem");
                int count = (int)(kernel.Types.Resolve(mem.TypeId).ArrayInfo?.Length ?? 0);
                long text = kernel.Types.TryGetEnumerator("MOD_TEXT", out long t) ? t : 0;
                baseAddress = mem.Index(text).Member("base").ToUInt64();
                size = 0;
                for (int i = 0; i < count; i++)
                {
                    size += mem.Index(i).Member("size").ToUInt64();
                }
            }

            int refs = kernel.Types.FindMember(moduleType, "refcnt") is not null ? (int)m.Member("refcnt.counter").ToInt64() - 1 : 0;
            KernelObject kallsyms = m.Member("kallsyms");
            int symbols = kallsyms.IsNull ? 0 : (int)kallsyms.Member("num_symtab").ToUInt64();
            list.Add(new LinuxModule(name, m.Address, StateName(kernel.Types, state), baseAddress, size, refs, symbols));
        }

        return list;
    }

    /// <summary>
    /// The module's symbols as <c>/proc/kallsyms</c> lists them (<c>module_get_kallsym</c>): its ELF symbol table
    /// (<c>mod->kallsyms->symtab</c>) with names from <c>strtab</c> and type letters from <c>typetab</c> (Linux 5.2+),
    /// entries with empty names skipped.
    /// </summary>
    /// <exception cref="KernelDataException">The tables are unreadable or the count is implausible.</exception>
    public static IReadOnlyList<KernelSymbol> Symbols(LinuxKernel kernel, LinuxModule module)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(module);
        KernelObject kallsyms = kernel.ObjectAt(module.Address, "struct module").Member("kallsyms");
        if (kallsyms.IsNull)
        {
            return [];
        }

        uint count = (uint)kallsyms.Member("num_symtab").ToUInt64();
        if (count > MaxModuleSymbols)
        {
            throw new KernelDataException(kallsyms.ToUInt64(), $"module {module.Name} kallsyms", $"num_symtab {count} is more than {MaxModuleSymbols}");
        }

        ulong symtab = kallsyms.Member("symtab").ToUInt64();
        ulong strtab = kallsyms.Member("strtab").ToUInt64();
        bool hasTypes = kernel.Types.FindMember(kallsyms.Deref().TypeId, "typetab") is not null;
        byte[] types = hasTypes ? new byte[count] : [];
        if (hasTypes && count > 0)
        {
            kernel.ReadExactly(kallsyms.Member("typetab").ToUInt64(), types, $"module {module.Name} typetab");
        }

        byte[] table = new byte[count * ElfSymSize];
        kernel.ReadExactly(symtab, table, $"module {module.Name} symtab");
        var list = new List<KernelSymbol>((int)count);
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> sym = table.AsSpan(i * ElfSymSize, ElfSymSize);
            uint nameOffset = BinaryPrimitives.ReadUInt32LittleEndian(sym);
            string name = kernel.ReadCString(strtab + nameOffset, MaxName, $"module {module.Name} strtab");
            if (name.Length == 0)
            {
                continue;
            }

            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(sym[8..]);
            list.Add(new KernelSymbol(name, value, hasTypes ? (char)types[i] : '?'));
        }

        return list;
    }

    private static string StateName(BtfTypes types, KernelObject state)
    {
        long v = state.ToInt64();
        foreach (BtfEnumValue e in types.Resolve(state.TypeId).EnumValues)
        {
            if (e.Value == v)
            {
                return e.Name.StartsWith("MODULE_STATE_", StringComparison.Ordinal) ? e.Name["MODULE_STATE_".Length..] : e.Name;
            }
        }

        return v.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
