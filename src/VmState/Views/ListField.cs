namespace VmState.Views;

/// <summary>
/// One named, typed value of each row of a <see cref="ListView{T}"/>: what a machine-readable form (JSON, a web UI's
/// data, a file of a FUSE view) holds for the row.
/// </summary>
/// <typeparam name="T">The row type (a library record such as <see cref="Linux.LinuxProcess"/>).</typeparam>
public sealed class ListField<T>
{
    private readonly Func<T, object?> _value;

    /// <summary>A field called <paramref name="name"/> of kind <paramref name="kind"/>, read from a row with <paramref name="value"/>.</summary>
    /// <param name="name">The field's name (the JSON key), unique in the view.</param>
    /// <param name="kind">What the value is; <paramref name="value"/> returns a matching type (see <see cref="FieldKind"/>).</param>
    /// <param name="value">The value of a row.</param>
    /// <param name="omitWhenNull">Leave the field out of a row whose value is null, instead of writing null.</param>
    public ListField(string name, FieldKind kind, Func<T, object?> value, bool omitWhenNull = false)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(value);
        Name = name;
        Kind = kind;
        _value = value;
        OmitWhenNull = omitWhenNull;
    }

    /// <summary>The field's name (the JSON key).</summary>
    public string Name { get; }

    /// <summary>What the value is.</summary>
    public FieldKind Kind { get; }

    /// <summary>True when a null value leaves the field out of the row.</summary>
    public bool OmitWhenNull { get; }

    /// <summary>The value of <paramref name="row"/>: a string, a whole number or a bool as <see cref="Kind"/> says, or null.</summary>
    public object? ValueOf(T row) => _value(row);
}
