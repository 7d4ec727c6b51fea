namespace VmState;

/// <summary>
/// An edit of a saved machine was refused when it was made, before anything was written: an address that is not
/// RAM or not mapped, an unknown register, a value that does not fit the field, a field that cannot be set that way.
/// <see cref="Target"/> names what the edit was aimed at.
/// </summary>
public sealed class InvalidEditException : VmStateException
{
    /// <summary>Creates the exception for an edit of <paramref name="target"/>.</summary>
    public InvalidEditException(string target, string message, Exception? inner = null)
        : base(message, inner)
    {
        ArgumentNullException.ThrowIfNull(target);
        Target = target;
    }

    /// <summary>Creates the exception for an edit of memory at <paramref name="address"/>.</summary>
    public InvalidEditException(ulong address, string target, string message)
        : this(target, message)
    {
        Address = address;
    }

    /// <summary>What the edit was aimed at: a register name, a field path, "guest-physical", "guest-virtual", a device id.</summary>
    public string Target { get; }

    /// <summary>The guest address of a refused memory edit, or null for an edit that is not of memory.</summary>
    public ulong? Address { get; }
}
