namespace VmState.Linux;

/// <summary>One kallsyms entry, as <c>/proc/kallsyms</c> shows it.</summary>
/// <param name="Name">Symbol name.</param>
/// <param name="Address">Runtime (relocated) virtual address; for absolute per-CPU symbols, the offset inside the per-CPU area.</param>
/// <param name="Type">The nm-style type letter: T/t text, D/d data, R/r read-only data, B/b bss, A absolute, W/V weak.</param>
public readonly record struct KernelSymbol(string Name, ulong Address, char Type)
{
    /// <summary>True for global symbols (upper-case type letter).</summary>
    public bool IsGlobal => Type is >= 'A' and <= 'Z';

    /// <inheritdoc />
    public override string ToString() => $"{Address:x16} {Type} {Name}";
}
