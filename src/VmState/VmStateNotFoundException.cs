namespace VmState;

/// <summary>
/// Something the caller named is not in the input: a snapshot of a qcow2 image, a kernel symbol, a BTF type, a
/// guest pid, a device, a vCPU. <see cref="Kind"/> and <see cref="Name"/> say what was looked for, so a caller can
/// offer a list or a hint without reading the message.
/// </summary>
public class VmStateNotFoundException : VmStateException
{
    /// <summary>Creates the exception for a <paramref name="kind"/> called <paramref name="name"/> that is not there.</summary>
    public VmStateNotFoundException(VmStateObjectKind kind, string name, string message, Exception? inner = null)
        : base(message, inner)
    {
        ArgumentNullException.ThrowIfNull(name);
        Kind = kind;
        Name = name;
    }

    /// <summary>What kind of thing was looked for.</summary>
    public VmStateObjectKind Kind { get; }

    /// <summary>What was looked for, as the caller gave it: a snapshot id or name, a symbol, a type, a pid, a device id, a vCPU index.</summary>
    public string Name { get; }
}
