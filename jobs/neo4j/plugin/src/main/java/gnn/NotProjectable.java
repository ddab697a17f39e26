package gnn;

/** Why a dataset was not projected (too big for the budget, odd data): the store path serves it instead. */
final class NotProjectable extends Exception {
    NotProjectable(String reason) {
        super(reason, null, false, false);
    }
}
