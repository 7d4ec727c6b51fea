using VmState.Memory;

namespace VmState.Linux;

/// <summary>
/// A kernel symbol with an optional offset, as users write it: <c>linux_banner</c>, <c>init_task+0x10</c>,
/// <c>init_task+16</c> (the offset in <see cref="AddressText"/> syntax).
/// </summary>
/// <param name="Name">The symbol name.</param>
/// <param name="Offset">Bytes past the symbol's address.</param>
public readonly record struct SymbolExpression(string Name, ulong Offset)
{
    /// <summary>Parses NAME or NAME+OFFSET.</summary>
    /// <exception cref="ArgumentException">The offset is not a number (an empty name is left to the lookup, which finds none).</exception>
    public static SymbolExpression Parse(string expression)
    {
        ArgumentNullException.ThrowIfNull(expression);
        int plus = expression.IndexOf('+', StringComparison.Ordinal);
        string name = plus < 0 ? expression : expression[..plus];
        ulong offset = plus < 0 ? 0 : AddressText.Parse(expression[(plus + 1)..], "symbol offset");
        return new SymbolExpression(name, offset);
    }

    /// <summary>The address in <paramref name="kernel"/>: the symbol's address plus the offset.</summary>
    /// <exception cref="UnknownSymbolException">The kernel's symbol table has no such name.</exception>
    public ulong Resolve(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return kernel.Symbols.TryGetAddress(Name, out ulong address)
            ? unchecked(address + Offset)
            : throw new UnknownSymbolException(Name);
    }
}
