namespace VmState.Linux;

/// <summary>A symbol expression names a symbol the guest kernel's symbol table does not have.</summary>
public sealed class UnknownSymbolException : KeyNotFoundException
{
    /// <summary>Creates the exception for <paramref name="name"/>.</summary>
    public UnknownSymbolException(string name)
        : base($"kallsyms has no symbol '{name}'")
    {
        Name = name;
    }

    /// <summary>The name that was looked up.</summary>
    public string Name { get; }
}
