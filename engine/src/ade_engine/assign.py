"""The best one-to-one assignment of fields to columns (Hungarian algorithm).

O(n² m) for n fields and m columns; a few milliseconds for 50 × 200.
"""


def best_assignment(scores: list[list[float]]) -> dict[int, int]:
    """Row index → column index maximizing the total score; every row of the smaller side is assigned."""
    rows = len(scores)
    if not rows or not scores[0]:
        return {}
    columns = len(scores[0])
    if rows > columns:
        flipped = [[scores[r][c] for r in range(rows)] for c in range(columns)]
        return {r: c for c, r in best_assignment(flipped).items()}
    # Minimize cost; a hair of cost per column index makes ties go to the leftmost column.
    cost = [[-scores[r][c] + c * 1e-9 for c in range(columns)] for r in range(rows)]
    return _hungarian(cost, rows, columns)


def _hungarian(cost, n: int, m: int) -> dict[int, int]:
    infinity = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    owner = [0] * (m + 1)
    way = [0] * (m + 1)
    for row in range(1, n + 1):
        owner[0] = row
        free_column = 0
        least = [infinity] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[free_column] = True
            current_row = owner[free_column]
            delta, next_column = infinity, 0
            costs = cost[current_row - 1]
            for column in range(1, m + 1):
                if used[column]:
                    continue
                reduced = costs[column - 1] - u[current_row] - v[column]
                if reduced < least[column]:
                    least[column] = reduced
                    way[column] = free_column
                if least[column] < delta:
                    delta, next_column = least[column], column
            for column in range(m + 1):
                if used[column]:
                    u[owner[column]] += delta
                    v[column] -= delta
                else:
                    least[column] -= delta
            free_column = next_column
            if owner[free_column] == 0:
                break
        while free_column:
            previous = way[free_column]
            owner[free_column] = owner[previous]
            free_column = previous
    return {owner[c] - 1: c - 1 for c in range(1, m + 1) if owner[c]}
