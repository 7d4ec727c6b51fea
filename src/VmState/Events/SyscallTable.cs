using System.Buffers.Binary;
using VmState.Linux;

namespace VmState.Events;

/// <summary>
/// The x86-64 system call names of the guest kernel, decoded from the kernel's own table: <c>sys_call_table</c>
/// (arch/x86/entry/syscall_64.c, an array of pointers to the <c>__x64_sys_NAME</c> wrappers, in every kernel from
/// 4.17 to at least 6.12 — since 6.9 the dispatch is a switch in <c>x64_sys_call</c>, but the array is still built
/// for tracing) is read from guest memory and each entry named after the <c>__x64_sys_</c> symbol at its address
/// (kallsyms). An entry at <c>__x64_sys_ni_syscall</c> is a number with no system call. Nothing is taken from a
/// list compiled into VmState, so the names are those of the kernel that runs.
/// </summary>
public sealed class SyscallTable
{
    /// <summary>The table's symbol.</summary>
    public const string TableSymbol = "sys_call_table";

    /// <summary>The prefix of the x86-64 system call wrappers (arch/x86/include/asm/syscall_wrapper.h).</summary>
    public const string WrapperPrefix = "__x64_sys_";

    /// <summary>The most entries read: NR_syscalls is 463 in 6.12; the table ends at the first entry that is not a wrapper.</summary>
    public const int MaxEntries = 1024;

    private readonly string?[] _names;

    private SyscallTable(string?[] names)
    {
        _names = names;
    }

    /// <summary>The number of table entries (the highest system call number + 1).</summary>
    public int Count => _names.Length;

    /// <summary>
    /// Decodes the table of <paramref name="kernel"/> (one read of guest memory, one pass over kallsyms).
    /// </summary>
    /// <exception cref="KernelDataException">The kernel has no <c>sys_call_table</c> symbol, the table cannot be read,
    /// or its first entry is not a system call wrapper.</exception>
    public static SyscallTable Read(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ulong table = kernel.Symbols.AddressOf(TableSymbol);
        var raw = new byte[MaxEntries * 8];
        int n = kernel.Read(table, raw);
        var entries = new ulong[n / 8];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
        }

        return FromEntries(entries, kernel.Symbols, table);
    }

    /// <summary>
    /// The table made of <paramref name="entries"/> (the pointers read from <c>sys_call_table</c>, possibly followed by
    /// whatever comes after it in memory), named through <paramref name="symbols"/>: the table ends at the first entry
    /// that is not the address of a <c>__x64_sys_</c> symbol.
    /// </summary>
    /// <exception cref="KernelDataException">The first entry is not a system call wrapper.</exception>
    public static SyscallTable FromEntries(ReadOnlySpan<ulong> entries, Kallsyms symbols, ulong tableAddress = 0)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        // Several symbols can share an address (a wrapper and an alias), so the wrappers are found by name first.
        var wrappers = new Dictionary<ulong, string>();
        foreach (KernelSymbol s in symbols)
        {
            if (s.Name.StartsWith(WrapperPrefix, StringComparison.Ordinal) && (!wrappers.TryGetValue(s.Address, out string? had) || had == "ni_syscall"))
            {
                wrappers[s.Address] = s.Name[WrapperPrefix.Length..];
            }
        }

        var names = new List<string?>();
        foreach (ulong entry in entries)
        {
            if (names.Count == MaxEntries || !wrappers.TryGetValue(entry, out string? name))
            {
                break;
            }

            names.Add(name == "ni_syscall" ? null : name);
        }

        if (names.Count == 0)
        {
            string found = entries.Length == 0 ? "nothing readable" : $"0x{entries[0]:x} ({symbols.Describe(entries[0])})";
            throw new KernelDataException(tableAddress, TableSymbol, $"expected pointers to {WrapperPrefix}* system call wrappers, found {found}");
        }

        return new SyscallTable([.. names]);
    }

    /// <summary>The name of system call <paramref name="number"/> (<c>getppid</c>), or null when the number has none.</summary>
    public string? Name(long number) => number >= 0 && number < _names.Length ? _names[number] : null;

    /// <summary>The number of the system call <paramref name="name"/>, or -1.</summary>
    public int Number(string name) => Array.IndexOf(_names, name);
}
