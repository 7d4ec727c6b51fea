namespace VmState.Live;

/// <summary>One option of a QEMU command line: its name without the leading dashes (<c>drive</c>) and its value, or
/// null for an option that takes none (<c>-no-reboot</c>).</summary>
/// <param name="Name">The option's name, e.g. <c>drive</c>, <c>netdev</c>, <c>S</c>.</param>
/// <param name="Value">Its argument as written, or null for a flag.</param>
public sealed record QemuArgument(string Name, string? Value)
{
    /// <summary>The value as a key=value list (<see cref="QemuOptionList"/>), the first element taken as <paramref name="impliedKey"/> when it has no '='.</summary>
    public QemuOptionList Options(string? impliedKey = null) => QemuOptionList.Parse(Value ?? string.Empty, impliedKey);

    /// <summary>The option as it is written on a command line: "-name" and, when it has one, the value.</summary>
    public IEnumerable<string> ToArgv()
    {
        yield return "-" + Name;
        if (Value is not null)
        {
            yield return Value;
        }
    }
}
