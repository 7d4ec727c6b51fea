using VmState.Views;

namespace VmState.History;

/// <summary>A loaded kernel module as a capture's index keeps it.</summary>
/// <param name="Name">The module's name.</param>
/// <param name="Base">The address of its core (text) section.</param>
/// <param name="Size">The size of its core section.</param>
public sealed record HistoryModule(string Name, ulong Base, ulong Size)
{
    /// <summary>How a list of these is shown (the CLI's JSON, other front ends).</summary>
    public static ListView<HistoryModule> View { get; } = new(
        [new("name", FieldKind.Text, m => m.Name), new("base", FieldKind.Hex, m => m.Base), new("size", FieldKind.Integer, m => m.Size)],
        [new("NAME", -20, m => m.Name), new("BASE", 18, m => $"0x{m.Base:x}"), new("SIZE", 10, m => m.Size.ToString(System.Globalization.CultureInfo.InvariantCulture))]);
}
