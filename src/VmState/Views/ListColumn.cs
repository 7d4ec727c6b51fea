namespace VmState.Views;

/// <summary>One column of the text table of a <see cref="ListView{T}"/>: a title, a width and the cell text of a row.</summary>
/// <typeparam name="T">The row type.</typeparam>
/// <param name="Title">The column's header, or null for a table without a header line.</param>
/// <param name="Width">
/// The column's width as .NET composite formatting's alignment: positive pads on the left (right-aligned),
/// negative on the right (left-aligned), 0 not at all (the last column).
/// </param>
/// <param name="Text">The cell of a row, as the table shows it (numbers formatted with the invariant culture).</param>
public sealed record ListColumn<T>(string? Title, int Width, Func<T, string> Text);
